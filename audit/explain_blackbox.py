"""Gradient-free attributions on the field's libraries: LIME (images, tabular) and SHAP's
KernelExplainer (tabular), for any model that gives logits — ONNX and other black boxes included.

The libraries sample perturbations on the host; every model call they make goes through
:func:`batched_probs` / :func:`batched_logits`, which run the adapter on its device in batches of
``batch_size`` and return one host array per library call (one call per explained sample, with all
of that sample's perturbations), never one per perturbation.

Randomness is seeded: LIME's ``random_state`` and the global NumPy state that KernelExplainer
draws from are set from the ``seed`` given (and the global state is restored afterwards).

References
----------
Ribeiro, Singh, Guestrin. "'Why Should I Trust You?': Explaining the Predictions of Any
Classifier", KDD 2016.
Lundberg, Lee. "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import torch

from audit.explain import seeded_numpy

LogitsFn = Callable[[torch.Tensor], torch.Tensor]
Segmentation = Literal["auto", "grid", "quickshift"]


@torch.no_grad()
def batched_logits(logits_fn: LogitsFn, x: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Logits of ``x`` (a host array), computed on ``device`` in batches; one host array back."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    outs = [logits_fn(t[i : i + batch_size].to(device)).float() for i in range(0, len(t), batch_size)]
    return torch.cat(outs).cpu().numpy().astype(np.float64)


@torch.no_grad()
def batched_probs(logits_fn: LogitsFn, x: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities of ``x``, computed on ``device`` in batches (softmax on the device too)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    outs = [torch.softmax(logits_fn(t[i : i + batch_size].to(device)).float(), dim=1)
            for i in range(0, len(t), batch_size)]
    return torch.cat(outs).cpu().numpy().astype(np.float64)


# ------------------------------------------------------------------------------------ images
def grid_segments(height: int, width: int, cell: int) -> np.ndarray:
    """Square superpixels of ``cell`` × ``cell`` pixels, numbered row by row: ``(H, W)`` int."""
    rows = np.arange(height)[:, None] // cell
    cols = np.arange(width)[None, :] // cell
    return (rows * (-(-width // cell)) + cols).astype(np.int64)


def segmenter(kind: Segmentation, height: int, width: int, cell: int | None = None,
              seed: int = 0) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """The superpixel function LIME uses, and a sentence that says what it is.

    ``auto`` picks a grid for small images (at most 32 × 32 pixels: quickshift finds no useful
    superpixels in an 8 × 8 digit) and quickshift (LIME's default) for larger ones.
    """
    if kind == "auto":
        kind = "grid" if max(height, width) <= 32 else "quickshift"
    if kind == "grid":
        c = cell or max(1, min(height, width) // 4)
        segments = grid_segments(height, width, c)
        return (lambda _image: segments), f"a {c}×{c}-pixel grid ({int(segments.max()) + 1} superpixels)"
    from lime.wrappers.scikit_image import SegmentationAlgorithm

    algo = SegmentationAlgorithm("quickshift", kernel_size=4, max_dist=200, ratio=0.2, random_seed=seed)
    return algo, "quickshift superpixels (kernel 4, max distance 200, ratio 0.2; LIME's default)"


def lime_image(logits_fn: LogitsFn, x: np.ndarray, target: np.ndarray, device: torch.device, *,
               n_samples: int = 256, hide_value: float = 0.0, segmentation: Segmentation = "auto",
               cell: int | None = None, seed: int = 0, batch_size: int = 256) -> tuple[np.ndarray, str]:
    """LIME for images over superpixels; returns pixel attributions shaped like ``x`` ``(n, C, H, W)``.

    Each pixel gets the weight of its superpixel in LIME's local linear model of the target-class
    probability; superpixels are hidden by setting them to ``hide_value``. LIME builds its perturbed
    images ``batch_size`` at a time (as float64 copies of the image), so its memory is bounded by it too.
    """
    from lime import lime_image as li

    n, c, h, w = x.shape
    seg_fn, seg_text = segmenter(segmentation, h, w, cell, seed)
    explainer = li.LimeImageExplainer(random_state=seed, feature_selection="none")

    def classifier_fn(images: np.ndarray) -> np.ndarray:
        batch = images[..., :1] if c == 1 else images  # LIME feeds greyscale images as RGB copies
        return batched_probs(logits_fn, np.moveaxis(batch, -1, 1), device, batch_size)

    out = np.zeros(x.shape, dtype=np.float32)
    quiet, li.tqdm = li.tqdm, lambda it, **_kw: it  # LIME draws a progress bar per sample; keep the audit quiet
    try:
        _lime_images(explainer, classifier_fn, x, target, out, seg_fn, n_samples, hide_value, seed, batch_size)
    finally:
        li.tqdm = quiet
    return out, seg_text


def _lime_images(explainer: Any, classifier_fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                 target: np.ndarray, out: np.ndarray, seg_fn: Callable[[np.ndarray], np.ndarray], n_samples: int,
                 hide_value: float, seed: int, batch_size: int) -> None:
    c = x.shape[1]
    for i in range(len(x)):
        image = x[i, 0] if c == 1 else np.moveaxis(x[i], 0, -1)
        segments = seg_fn(np.repeat(image[..., None], 3, -1) if c == 1 else image.astype(np.float64))
        exp = explainer.explain_instance(image.astype(np.float64), classifier_fn, labels=(int(target[i]),),
                                         top_labels=None, hide_color=hide_value, num_features=int(segments.max()) + 1,
                                         num_samples=n_samples, batch_size=max(min(batch_size, n_samples), 1),
                                         segmentation_fn=lambda _img, s=segments: s, random_seed=seed)
        weights = np.zeros(int(segments.max()) + 1)
        for seg, wt in exp.local_exp[int(target[i])]:
            weights[seg] = wt
        out[i] = weights[segments][None]


# ------------------------------------------------------------------------------------ tabular
def lime_tabular(logits_fn: LogitsFn, x: np.ndarray, target: np.ndarray, device: torch.device, *,
                 training_data: np.ndarray, feature_names: list[str] | None = None, n_samples: int = 256,
                 seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """LIME's tabular explainer (quartile discretisation, statistics from ``training_data``);
    returns ``(n, F)`` weights of the target class per feature."""
    from lime.lime_tabular import LimeTabularExplainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant columns (e.g. blank digit borders)
        explainer = LimeTabularExplainer(np.asarray(training_data, dtype=np.float64), mode="classification",
                                         feature_names=feature_names, discretize_continuous=True,
                                         feature_selection="none", random_state=seed)
        out = np.zeros(x.shape, dtype=np.float32)
        for i in range(len(x)):
            exp = explainer.explain_instance(
                x[i].astype(np.float64), lambda rows: batched_probs(logits_fn, rows, device, batch_size),
                labels=(int(target[i]),), top_labels=None, num_features=x.shape[1], num_samples=n_samples)
            for j, wt in exp.local_exp[int(target[i])]:
                out[i, j] = wt
    return out


def kernel_shap(logits_fn: LogitsFn, x: np.ndarray, target: np.ndarray, device: torch.device, *,
                background: np.ndarray, n_samples: int = 512, seed: int = 0,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """SHAP's KernelExplainer on the logits, without L1 feature selection (every feature gets a value).

    Returns the ``(n, F)`` SHAP values of the target logit and the ``(n,)`` expected value
    ``E[f(background)]`` for the target, so that ``values.sum(1) == f(x)[target] - expected``.
    """
    import shap

    def f(rows: np.ndarray) -> np.ndarray:
        return batched_logits(logits_fn, rows, device, batch_size)

    with seeded_numpy(seed), quiet_shap():
        explainer = shap.KernelExplainer(f, np.asarray(background, dtype=np.float64))
        values = explainer.shap_values(np.asarray(x, dtype=np.float64), nsamples=n_samples, l1_reg=0, silent=True)
    arr = pick_class(values, target)
    expected = np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)[target]
    return arr.astype(np.float32), expected


@contextlib.contextmanager
def quiet_shap() -> Iterator[None]:
    """Skip the formatting of SHAP's debug log lines while nobody reads them.

    KernelExplainer writes arrays into f-strings for ``log.debug`` / ``log.info`` whether or not the
    ``shap`` logger is enabled, and formatting them is most of its own time (measured: about 58% of a
    tabular KernelSHAP run on a small MLP). While the ``shap`` logger would drop INFO records, NumPy's
    ``repr`` of an array inside this block is a placeholder (NumPy's ``printoptions`` context, local to
    this thread); nothing numeric changes. With the logger enabled, or a NumPy older than 2.1 (no
    ``override_repr``), the arrays are formatted as usual.
    """
    if logging.getLogger("shap").isEnabledFor(logging.INFO) or "override_repr" not in np.get_printoptions():
        yield
        return
    with np.printoptions(override_repr=_unformatted):
        yield


def _unformatted(a: np.ndarray) -> str:
    return f"<array {a.shape}>"


def pick_class(values: Any, target: np.ndarray) -> np.ndarray:
    """SHAP's per-class values (a list of arrays, or one array with classes last) for one class per row."""
    if isinstance(values, list):
        arr = np.stack(values, axis=-1)
    else:
        arr = np.asarray(values)
    return np.moveaxis(arr, -1, 0)[target, np.arange(len(target))]
