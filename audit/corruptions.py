"""Input corruptions at five severities, per modality, in the style of ImageNet-C / CIFAR-10-C.

Image corruptions work on ``(N, C, H, W)`` arrays in the model's raw input range; the severity
constants follow CIFAR-10-C (Hendrycks & Dietterich 2019), with blur radii scaled up for images
larger than CIFAR's 32 px and kept in pixels below it (:func:`blur_sigma`). Tabular and text corruptions are deepaudit's own, documented below.
Every corruption is a pure function of its inputs, severity and a seeded generator.

References
----------
Hendrycks, Dietterich. "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
SEVERITIES = (1, 2, 3, 4, 5)


def _unit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def gaussian_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[s - 1]
    return np.clip(x + rng.normal(0, c, x.shape), 0, 1)


def shot_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = (500, 250, 100, 75, 50)[s - 1]
    return np.clip(rng.poisson(x * c) / c, 0, 1)


def blur_sigma(s: int, size: int) -> float:
    """σ in pixels of ``gaussian_blur`` at severity ``s`` on images of ``size`` pixels (the longer side).

    CIFAR-10-C's σ (0.4 … 1.0 px at 32 px), scaled up for larger images and never down: scaled to an 8 px
    image it would be 0.1 … 0.25 px, which moves no pixel (a neighbour's weight of e^-50 at 0.1 px).
    """
    return (0.4, 0.6, 0.7, 0.8, 1.0)[s - 1] * max(1.0, size / 32)


def gaussian_blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    sigma = blur_sigma(s, max(x.shape[-2:]))
    radius = max(1, int(np.ceil(3 * sigma)))
    grid = np.arange(-radius, radius + 1)
    kernel = np.exp(-(grid**2) / (2 * sigma**2))
    kernel = torch.tensor(kernel / kernel.sum(), dtype=torch.float32)
    t = torch.from_numpy(x.astype(np.float32))
    n, c, h, w = t.shape
    flat = t.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w).numpy()


def brightness(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + (0.05, 0.1, 0.15, 0.2, 0.3)[s - 1], 0, 1)


def contrast(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[s - 1]
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip((x - mean) * c + mean, 0, 1)


def jpeg(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    quality = (80, 65, 58, 50, 40)[s - 1]
    out = np.empty_like(x)
    for i, img in enumerate(x):
        arr = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)[..., :3])
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        dec = np.asarray(Image.open(buf), dtype=np.float32) / 255
        out[i] = dec[None] if dec.ndim == 2 else dec.transpose(2, 0, 1)
    return out


def pixelate(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.95, 0.9, 0.85, 0.75, 0.65)[s - 1]
    t = torch.from_numpy(x.astype(np.float32))
    h, w = t.shape[-2:]
    small = F.interpolate(t, size=(max(1, int(h * c)), max(1, int(w * c))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest").numpy()


IMAGE_CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "gaussian_blur": gaussian_blur,
    "brightness": brightness, "contrast": contrast, "jpeg": jpeg, "pixelate": pixelate,
}


def corrupt_images(x: np.ndarray, name: str, s: int, rng: np.random.Generator,
                   input_range: tuple[float, float]) -> np.ndarray:
    """Apply an image corruption in [0, 1] and map back to the model's input range."""
    lo, hi = input_range
    out = IMAGE_CORRUPTIONS[name](_unit(x.astype(np.float64), lo, hi), s, rng)
    return (lo + out * (hi - lo)).astype(np.float32)


# ------------------------------------------------------------------------------------- tabular


def tabular_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of (0.1, 0.2, 0.5, 1, 2) × each feature's standard deviation."""
    c = (0.1, 0.2, 0.5, 1.0, 2.0)[s - 1]
    return (x + rng.normal(size=x.shape) * c * x.std(axis=0, keepdims=True)).astype(x.dtype)


def tabular_missing(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """(5, 10, 20, 30, 50)% of entries missing, filled with the column mean (mean imputation)."""
    p = (0.05, 0.1, 0.2, 0.3, 0.5)[s - 1]
    mask = rng.random(x.shape) < p
    return np.where(mask, x.mean(axis=0, keepdims=True), x).astype(x.dtype)


TABULAR_CORRUPTIONS: dict[str, Corruption] = {"gaussian_noise": tabular_noise, "missing_values": tabular_missing}


# ---------------------------------------------------------------------------------------- text


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 2:
        return word
    i = int(rng.integers(0, len(word) - 1))
    op = rng.integers(0, 3)
    if op == 0:  # swap neighbours
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 1:  # delete
        return word[:i] + word[i + 1 :]
    return word[:i] + chr(int(rng.integers(97, 123))) + word[i:]  # insert


def text_typos(texts: list[str], s: int, rng: np.random.Generator) -> list[str]:
    """One typo (swap, deletion or insertion) in (5, 10, 20, 30, 50)% of words."""
    p = (0.05, 0.1, 0.2, 0.3, 0.5)[s - 1]
    return [" ".join(_typo(w, rng) if rng.random() < p else w for w in t.split(" ")) for t in texts]


def text_case(texts: list[str], s: int, rng: np.random.Generator) -> list[str]:
    """(10, 25, 50, 75, 100)% of words upper-cased."""
    p = (0.1, 0.25, 0.5, 0.75, 1.0)[s - 1]
    return [" ".join(w.upper() if rng.random() < p else w for w in t.split(" ")) for t in texts]


TEXT_CORRUPTIONS = {"typos": text_typos, "case_change": text_case}


def all_corruptions() -> list[str]:
    """Every corruption name of every input kind, for validating a config before the kind is known."""
    return list(dict.fromkeys([*IMAGE_CORRUPTIONS, *TABULAR_CORRUPTIONS, *TEXT_CORRUPTIONS]))


def corruptions_for(kind: str) -> list[str]:
    return list({"image": IMAGE_CORRUPTIONS, "tabular": TABULAR_CORRUPTIONS, "text": TEXT_CORRUPTIONS}.get(kind, {}))


def apply(kind: str, inputs: np.ndarray | list[str], name: str, s: int, rng: np.random.Generator,
          input_range: tuple[float, float] | None) -> np.ndarray | list[str]:
    if kind == "image":
        x = np.asarray(inputs)
        return corrupt_images(x, name, s, rng, input_range or (float(x.min()), float(x.max())))
    if kind == "tabular":
        return TABULAR_CORRUPTIONS[name](np.asarray(inputs), s, rng)
    return TEXT_CORRUPTIONS[name]([str(t) for t in inputs], s, rng)
