"""Neural Cleanse as it was before commit 866cb24 (audit/poisoning.py at 42b0b3c), for bench_heavy.py only.

Every class's mask and pattern in one (classes, ...) tensor and one batch of classes × batch_size rows per
step, the model's weights still requiring gradients, and one early stop for all classes together (every
class has a working trigger and none shrank by 1% for early_stop_patience steps). Copied verbatim but for
``max_batch`` (accepted and ignored: the old code had no bound) and ``steps_used`` (the steps run, the same
for every class), so the benchmark's "before" is the old algorithm, not a slowed-down new one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from audit.poisoning import ReverseEngineered


def reverse_engineer_triggers(logits_fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, n_classes: int, *,
                              low: np.ndarray | float, high: np.ndarray | float, channel_axis: bool,
                              steps: int = 300, batch_size: int = 32, max_batch: int | None = None,
                              lr: float = 0.1, init_cost: float = 1e-3,
                              success_threshold: float = 0.99, patience: int = 5, cost_multiplier: float = 1.5,
                              early_stop_patience: int = 50, early_stop_factor: float = 0.99,
                              device: torch.device | str = "cpu", seed: int = 0) -> ReverseEngineered:
    """Neural Cleanse: for every class at once, the smallest mask ``m`` and pattern ``p`` such that
    ``(1 − m)·x + m·p`` is classified as that class.

    Minimises ``CE(f(x'), target) + cost·‖m‖₁`` with Adam on tanh-parametrised ``m ∈ [0, 1]`` and
    ``p ∈ [low, high]``; the cost rises (×``cost_multiplier``) after ``patience`` steps at or above
    ``success_threshold`` and falls (÷``cost_multiplier``^1.5) after ``patience`` steps below, as in
    Wang et al. (2019) and ART's Keras version. The classes are optimised together in one batch;
    the loop stops early once every class has a successful trigger and for ``early_stop_patience``
    steps none has shrunk below ``early_stop_factor`` times its best (0 disables early stopping).

    Parameters
    ----------
    logits_fn : callable
        Raw inputs (on ``device``) to logits, differentiable.
    x : ndarray
        Clean raw inputs, ``(n, *input_shape)``.
    low, high : float or ndarray
        Range of the pattern, broadcastable to ``input_shape``.
    channel_axis : bool
        Inputs are ``(C, H, W)`` images: one mask over ``(H, W)`` shared by the channels.
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    shape = tuple(xt.shape[1:])
    mask_shape = (1, *shape[1:]) if channel_axis else shape
    lo = torch.as_tensor(np.array(np.broadcast_to(low, shape)), dtype=torch.float32, device=dev)
    hi = torch.as_tensor(np.array(np.broadcast_to(high, shape)), dtype=torch.float32, device=dev)
    k = n_classes
    mask_raw = torch.zeros((k, *mask_shape), device=dev, requires_grad=True)
    pattern_raw = (torch.rand((k, *shape), generator=gen) * 2 - 1).to(dev).requires_grad_(True)
    opt = torch.optim.Adam([mask_raw, pattern_raw], lr=lr, betas=(0.5, 0.9))
    cost = torch.full((k,), init_cost, device=dev)
    targets = torch.arange(k, device=dev)
    best_l1 = torch.full((k,), float("inf"))
    best_mask = torch.zeros((k, *mask_shape))
    best_pattern = torch.zeros((k, *shape))
    best_success = torch.zeros(k)
    up = torch.zeros(k, dtype=torch.long)
    down = torch.zeros(k, dtype=torch.long)
    last_success = torch.zeros(k)
    n = len(xt)
    b = min(batch_size, n)
    stale = 0
    ran = 0
    for _ in range(steps):
        ran += 1
        rows = torch.randint(0, n, (b,), generator=gen)
        xb = xt[rows].to(dev)
        mask = torch.tanh(mask_raw) / 2 + 0.5
        pattern = lo + (torch.tanh(pattern_raw) / 2 + 0.5) * (hi - lo)
        adv = (1 - mask[:, None]) * xb[None] + (mask * pattern)[:, None]  # (k, b, *shape)
        logits = logits_fn(adv.reshape(k * b, *shape)).reshape(k, b, -1)
        ce = torch.nn.functional.cross_entropy(logits.permute(0, 2, 1), targets[:, None].expand(k, b),
                                               reduction="none").mean(1)
        l1 = mask.flatten(1).sum(1)
        opt.zero_grad(set_to_none=True)
        (ce + cost * l1).sum().backward()
        opt.step()
        with torch.no_grad():
            success = (logits.argmax(2) == targets[:, None]).float().mean(1).cpu()
            l1c = l1.detach().cpu()
            better = (success >= success_threshold) & (l1c < best_l1)
            # early stop (as ART's early_stop): every class has a trigger and none shrank by 1% for a while
            improved = bool(((success >= success_threshold) & (l1c < early_stop_factor * best_l1)).any())
            stale = 0 if improved or not torch.isfinite(best_l1).all() else stale + 1
            if better.any():
                best_l1[better] = l1c[better]
                best_mask[better] = mask.detach().cpu()[better]
                best_pattern[better] = pattern.detach().cpu()[better]
                best_success[better] = success[better]
            ok = success >= success_threshold
            up = torch.where(ok, up + 1, torch.zeros_like(up))
            down = torch.where(ok, torch.zeros_like(down), down + 1)
            raise_cost = (up >= patience).to(dev)
            lower_cost = (down >= patience).to(dev)
            cost = torch.where(raise_cost, cost * cost_multiplier, cost)
            cost = torch.where(lower_cost, cost / cost_multiplier**1.5, cost)
            up[raise_cost.cpu()] = 0
            down[lower_cost.cpu()] = 0
            last_success = success
        if early_stop_patience and stale >= early_stop_patience:
            break
    reached = torch.isfinite(best_l1)
    with torch.no_grad():  # classes that never reached the threshold: keep the last mask (as ART does)
        mask = (torch.tanh(mask_raw) / 2 + 0.5).cpu()
        pattern = (lo + (torch.tanh(pattern_raw) / 2 + 0.5) * (hi - lo)).cpu()
    l1 = torch.where(reached, best_l1, mask.flatten(1).sum(1))
    best_mask[~reached] = mask[~reached]
    best_pattern[~reached] = pattern[~reached]
    best_success[~reached] = last_success[~reached]
    return ReverseEngineered(mask_l1=l1.numpy().astype(np.float64), success=best_success.numpy().astype(np.float64),
                             reached=reached.numpy(), masks=best_mask.numpy(), patterns=best_pattern.numpy(),
                             steps_used=np.full(k, ran))

