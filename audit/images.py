"""Images in results: what a check puts in an ``image_grid`` figure, bounded in size.

``results.json`` holds every figure's data as numbers, and a full-resolution 3×224×224 input is 150,528 of
them: the explanations check's grid alone (three inputs, each with one heatmap per method) was about 900,000
numbers at that size. The report draws each image about 200 pixels wide, so nothing is lost by storing at most
:data:`MAX_SIDE` × :data:`MAX_SIDE` pixels: larger images are reduced by adaptive average pooling
(``torch.nn.functional.adaptive_avg_pool2d``, each output pixel the mean of its block), and the figure's caption
says so (:func:`downsampled_note`).
"""

from __future__ import annotations

import numpy as np
import torch

#: Largest side, in pixels, of an image stored in a figure.
MAX_SIDE = 64


def pooled(image: torch.Tensor | np.ndarray, max_side: int = MAX_SIDE) -> torch.Tensor:
    """``image`` ((C, H, W) or (H, W)) reduced by adaptive average pooling so that neither side exceeds
    ``max_side`` (the aspect ratio kept, each side at least 1); returned unchanged when it already fits."""
    t = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image).detach().float().cpu()
    h, w = t.shape[-2:]
    if max(h, w) <= max_side:
        return t
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    flat = t[None, None] if t.dim() == 2 else t[None]
    out = torch.nn.functional.adaptive_avg_pool2d(flat, size)
    return out[0, 0] if t.dim() == 2 else out[0]


def figure_image(image: torch.Tensor | np.ndarray, max_side: int = MAX_SIDE) -> list:
    """An image in [0, 1] for an ``image_grid`` figure: pooled (:func:`pooled`), channels last for colour
    ((C, H, W) with one channel becomes (H, W)), rounded to 4 decimals, as nested lists."""
    t = pooled(image, max_side)
    if t.dim() == 3:
        t = t[0] if t.shape[0] == 1 else t.permute(1, 2, 0)
    return t.round(decimals=4).tolist()


def figure_heatmap(heat: torch.Tensor | np.ndarray, max_side: int = MAX_SIDE) -> list:
    """A non-negative (H, W) map for an ``image_grid`` figure: pooled, then scaled so its largest value is 1."""
    t = pooled(heat, max_side)
    return (t / t.max().clamp_min(1e-12)).round(decimals=4).tolist()


def downsampled_note(shape: tuple[int, ...], max_side: int = MAX_SIDE) -> str:
    """The caption's sentence for images of ``shape`` (… H, W): empty when they are stored at full size."""
    h, w = (int(d) for d in shape[-2:])
    if max(h, w) <= max_side:
        return ""
    scale = max_side / max(h, w)
    return (f" Images of {h}×{w} pixels are stored and drawn at {max(1, round(h * scale))}×{max(1, round(w * scale))} "
            "(adaptive average pooling: each pixel is the mean of its block).")
