"""Out-of-distribution scores, detection metrics and built-in synthetic OOD sets.

Every score is oriented so that **higher means more in-distribution**. Detection metrics treat
in-distribution samples as the positive class (the convention of Hendrycks & Gimpel 2017 and
most OOD benchmarks): AUROC, AUPR-In and the false-positive rate on OOD inputs at 95% true
positive rate on in-distribution inputs.

References
----------
Hendrycks, Gimpel. "A Baseline for Detecting Misclassified and Out-of-Distribution Examples", ICLR 2017.
Liu, Wang, Owens, Li. "Energy-based Out-of-distribution Detection", NeurIPS 2020.
Lee, Lee, Lee, Shin. "A Simple Unified Framework for Detecting Out-of-Distribution Samples and
Adversarial Attacks", NeurIPS 2018 (Mahalanobis).
Sun, Ming, Zhu, Li. "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from audit.rows import ArrayRows, Rows
from audit.stats import bootstrap_score_histogram_chunks

# ---------------------------------------------------------------------------------------- scores


def msp_score(logits: torch.Tensor) -> np.ndarray:
    """Maximum softmax probability."""
    return torch.softmax(logits.double(), dim=1).max(dim=1).values.numpy()


def max_logit_score(logits: torch.Tensor) -> np.ndarray:
    return logits.double().max(dim=1).values.numpy()


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy, ``T * logsumexp(logits / T)``."""
    return (temperature * torch.logsumexp(logits.double() / temperature, dim=1)).numpy()


class Mahalanobis:
    """Class-conditional Gaussians with a shared covariance, fitted on reference features.

    ``score(f) = -min_c (f - mu_c)^T Sigma^-1 (f - mu_c)``.
    """

    def __init__(self, features: torch.Tensor, labels: np.ndarray, ridge: float = 1e-6) -> None:
        f = features.double()
        classes = np.unique(labels)
        lab = torch.as_tensor(labels)
        self.means = torch.stack([f[lab == c].mean(0) for c in classes])
        centred = f - self.means[torch.searchsorted(torch.as_tensor(classes), lab)]
        cov = centred.T @ centred / len(f)
        cov += ridge * torch.eye(cov.shape[0], dtype=cov.dtype) * max(float(cov.diagonal().mean()), 1e-12)
        self.precision = torch.linalg.pinv(cov, hermitian=True)

    def distances(self, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Squared Mahalanobis distance to every class mean, ``(n, classes)``."""
        out = []
        for start in range(0, len(features), batch_size):
            d = features[start : start + batch_size].double()[:, None, :] - self.means[None]
            out.append(torch.einsum("ncd,de,nce->nc", d, self.precision, d))
        return torch.cat(out)

    def score(self, features: torch.Tensor) -> np.ndarray:
        return (-self.distances(features).min(dim=1).values).numpy()


def knn_score(reference: torch.Tensor, features: torch.Tensor, k: int = 10, batch_size: int = 2048,
              exclude_self: bool = False) -> np.ndarray:
    """Negative distance to the k-th nearest reference feature, on L2-normalised features."""
    ref = torch.nn.functional.normalize(reference.float(), dim=1)
    feats = torch.nn.functional.normalize(features.float(), dim=1)
    kk = min(k + int(exclude_self), len(ref))
    out = []
    for start in range(0, len(feats), batch_size):
        dist = torch.cdist(feats[start : start + batch_size], ref)
        out.append(dist.topk(kk, dim=1, largest=False).values[:, -1])
    return (-torch.cat(out)).double().numpy()


# --------------------------------------------------------------------------------------- metrics


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate on OOD inputs at the threshold keeping ``tpr`` of in-distribution inputs."""
    labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    fpr, tprs, _ = roc_curve(labels, np.r_[id_scores, ood_scores])
    return float(fpr[np.searchsorted(tprs, tpr, side="left")])


def detection_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR-In and FPR at 95% TPR (scikit-learn on the same scores)."""
    labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    scores = np.r_[id_scores, ood_scores]
    return {"auroc": float(roc_auc_score(labels, scores)),
            "aupr": float(average_precision_score(labels, scores)),
            "fpr95": fpr_at_tpr(id_scores, ood_scores)}


def bootstrap_auroc(id_scores: np.ndarray, ood_scores: np.ndarray, n_resamples: int,
                    rng: np.random.Generator) -> np.ndarray:
    """AUROC of stratified bootstrap resamples (ID and OOD resampled separately), vectorised in chunks
    of resamples (memory ``O(chunk × n)``, the intervals independent of the chunk size).

    Ties count one half, as in the Mann–Whitney statistic and ``roc_auc_score``.
    """
    if n_resamples == 0:
        return np.empty(0)
    n_id, n_ood = len(id_scores), len(ood_scores)
    out = []
    for pos, neg in bootstrap_score_histogram_chunks(id_scores, ood_scores, n_resamples, rng):
        below = np.cumsum(neg, axis=1) - neg
        out.append((pos * (below + 0.5 * neg)).sum(axis=1) / (n_id * n_ood))
    return np.concatenate(out)


# ---------------------------------------------------------------------------- synthetic OOD sets


class GeneratedImages(Rows):
    """``n`` synthetic images made when taken, a batch at a time, so a set of 500 images of 3×224×224 (301 MB as
    float32) never exists whole: row ``i`` is ``make(i, rng_i)`` with its own generator ``rng_i =
    default_rng([seed, i])``, the same image whichever batch takes it."""

    format = "generated"

    def __init__(self, n: int, row_shape: tuple[int, ...], seed: int,
                 make: Callable[[np.ndarray, list[np.random.Generator]], np.ndarray]) -> None:
        super().__init__((n, *row_shape), np.float32, np.float32)
        self.seed, self.make = int(seed), make

    def _read(self, rows: np.ndarray) -> np.ndarray:
        gens = [np.random.default_rng([self.seed, int(i)]) for i in rows]
        return np.ascontiguousarray(self.make(rows, gens), dtype=np.float32)


def synthetic_sets(inputs: Rows | np.ndarray | list[str], kind: str, n: int, rng: np.random.Generator,
                   input_range: tuple[float, float] | None) -> dict[str, Rows | np.ndarray | list[str]]:
    """Built-in OOD sets for a modality, shaped like ``inputs``; each of ``n`` samples, built from ``n`` rows
    taken from ``inputs`` (a :class:`~audit.rows.Rows` is never read whole; its value range is streamed).
    Image sets are :class:`GeneratedImages`, made a batch at a time when the model takes them."""
    if kind == "text":
        texts = [str(t) for t in inputs]
        pick = rng.integers(0, len(texts), n)
        shuffled = []
        for i in pick:
            words = texts[i].split()
            rng.shuffle(words)
            shuffled.append(" ".join(words))
        letters = np.array(list("bcdfghjklmnpqrstvwxzqxj"))
        oov = [" ".join("".join(rng.choice(letters, rng.integers(4, 10))) for _ in range(rng.integers(5, 15)))
               for _ in range(n)]
        return {"shuffled_tokens": shuffled, "oov_strings": oov}
    x = inputs if isinstance(inputs, Rows) else ArrayRows(np.asarray(inputs))
    pick = rng.integers(0, len(x), n)
    if kind == "image":
        lo, hi = input_range or x.value_range()
        shape = tuple(x.shape[1:])
        seeds = rng.integers(0, 2**63 - 1, 4)

        def uniform(rows: np.ndarray, gens: list[np.random.Generator]) -> np.ndarray:
            return np.stack([g.uniform(lo, hi, shape).astype(np.float32) for g in gens])

        def gaussian(rows: np.ndarray, gens: list[np.random.Generator]) -> np.ndarray:
            return np.stack([np.clip(g.normal((lo + hi) / 2, (hi - lo) / 4, shape), lo, hi).astype(np.float32) for g in gens])

        def shuffled(rows: np.ndarray, gens: list[np.random.Generator]) -> np.ndarray:
            flat = x[pick[rows]].reshape(len(rows), -1)
            for row, g in zip(flat, gens):
                g.shuffle(row)
            return flat.reshape(len(rows), *shape)

        def patches(rows: np.ndarray, gens: list[np.random.Generator]) -> np.ndarray:
            return np.stack([natural_patches(shape, 1, g, lo, hi)[0] for g in gens])

        sets: dict[str, Rows | np.ndarray | list[str]] = {
            "uniform_noise": GeneratedImages(n, shape, seeds[0], uniform),
            "gaussian_noise": GeneratedImages(n, shape, seeds[1], gaussian),
            "pixel_shuffled": GeneratedImages(n, shape, seeds[2], shuffled),
        }
        if x.ndim == 4 and x.shape[1] in (1, 3):
            sets["natural_patches"] = GeneratedImages(n, shape, seeds[3], patches)
        return sets
    if kind == "tabular":
        permuted = x[pick].copy()
        for j in range(x.shape[1]):
            permuted[:, j] = x[rng.integers(0, len(x), n), j]  # n rows per feature, never the whole table
        return {"permuted_features": permuted.astype(x.dtype)}
    if kind == "sequence":
        seqs = x[pick].copy()
        for row in seqs:
            rng.shuffle(row)
        return {"shuffled_tokens": seqs}
    return {}


@functools.lru_cache(maxsize=1)
def _sample_photos() -> tuple[np.ndarray, ...]:
    """scikit-learn's two bundled photographs (decoded once per process)."""
    from sklearn.datasets import load_sample_images

    return tuple(load_sample_images().images)


def natural_patches(shape: tuple[int, ...], n: int, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Random crops of scikit-learn's two bundled photographs, resized to ``shape`` (C, H, W)."""
    from PIL import Image

    c, h, w = shape
    photos = _sample_photos()
    out = np.empty((n, c, h, w), dtype=np.float32)
    for i in range(n):
        img = photos[rng.integers(0, len(photos))]
        small = min(img.shape[:2])  # 427 px: an output over half of it is cropped at its own size or the photo's
        least = min(max(h, w), small)
        side = int(rng.integers(least, max(small // 2, least) + 1))
        top, left = rng.integers(0, img.shape[0] - side + 1), rng.integers(0, img.shape[1] - side + 1)
        crop = Image.fromarray(img[top : top + side, left : left + side]).resize((w, h), Image.BILINEAR)
        arr = np.asarray(crop.convert("L" if c == 1 else "RGB"), dtype=np.float32) / 255.0
        arr = arr[None] if c == 1 else arr.transpose(2, 0, 1)[:c]
        out[i] = lo + arr * (hi - lo)
    return out
