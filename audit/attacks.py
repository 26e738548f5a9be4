"""Torch-native evasion attacks: FGSM and PGD under L∞ and L2, with random restarts.

Every tensor stays on the model's device; only input gradients are computed (the model's
parameters are never asked for gradients); no value leaves the device inside the attack loop.
ART's implementations are the reference: ``tests/audit/checks/test_adversarial.py`` cross-checks
both, and ``tests/audit/test_attacks.py`` checks the fused L∞ step against the plain step-project-clip.

References
----------
Goodfellow, Shlens, Szegedy. "Explaining and Harnessing Adversarial Examples", ICLR 2015 (FGSM).
Madry et al. "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018 (PGD).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.adapter import ModelAdapter

Norm = Literal["linf", "l2"]
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def project(delta: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    """Project perturbations onto the ε-ball of ``norm``."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    if norm == "l2":
        return delta * (eps / _flat_norm(delta)).clamp(max=1.0)
    raise ValueError(f"The 'norm' parameter of project must be 'linf' or 'l2'. Got {norm!r} instead.")


def _random_start(x: torch.Tensor, eps: float, norm: Norm, generator: torch.Generator) -> torch.Tensor:
    if norm == "linf":
        return (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    direction = direction / _flat_norm(direction)
    d = x[0].numel()
    radius = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, device=x.device, dtype=x.dtype)
    return direction * eps * radius ** (1.0 / d)


def _modules_of(logits_fn: LogitsFn) -> list[nn.Module]:
    """The modules whose parameters ``logits_fn`` uses: itself, or an adapter's model and preprocessing."""
    if isinstance(logits_fn, nn.Module):
        return [logits_fn]
    owner = getattr(logits_fn, "__self__", None)  # a bound method's object: an adapter, or anything else
    if not isinstance(owner, ModelAdapter):
        return []
    return [m for m in (owner.torch_model, owner.preprocess) if isinstance(m, nn.Module)]


@contextmanager
def frozen_parameters(logits_fn: LogitsFn) -> Iterator[None]:
    """Switch off ``requires_grad`` on the parameters behind ``logits_fn`` for the duration of an attack.

    Only the input gradient is asked for, so nothing is lost; autograd then neither records the
    parameters in the graph nor keeps the activations their gradients would need.
    """
    params = [p for m in _modules_of(logits_fn) for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _input_grad(logits_fn: LogitsFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x.requires_grad_(True)
    loss = F.cross_entropy(logits_fn(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def pgd(logits_fn: LogitsFn, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: Norm = "linf",
        steps: int = 10, step_size: float | None = None, restarts: int = 1, random_start: bool = True,
        clip: tuple[float, float] | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent (untargeted, cross-entropy); returns adversarial inputs.

    Over ``restarts`` random starts, each sample keeps the first perturbation that fools the
    model, or the first one tried when none does. ``steps=1, step_size=eps, random_start=False`` is FGSM.

    Each step is one forward and one input-gradient backward pass plus a few fused element-wise
    operations: under L∞ the ε-ball and the input range are one box, precomputed per sample, so
    the step and both projections are a single ``torch.clamp``. The parameters' ``requires_grad``
    is off during the attack (:func:`frozen_parameters`), and nothing leaves the device.
    """
    if eps <= 0:
        return x.detach().clone()
    step_size = step_size if step_size is not None else 2.5 * eps / steps
    generator = generator or torch.Generator(device=x.device).manual_seed(0)
    x = x.detach()
    with frozen_parameters(logits_fn):
        if norm == "linf":
            # the intersection of the ε-box and the input range (clamping x ± ε into the range keeps it
            # exact for inputs that lie outside the range)
            low, high = x - eps, x + eps
            if clip is not None:
                low, high = low.clamp(*clip), high.clamp(*clip)
        best: torch.Tensor | None = None
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for restart in range(max(1, restarts)):
            start = _random_start(x, eps, norm, generator) if random_start else None
            if norm == "linf":
                adv = torch.clamp(x + start, low, high) if start is not None else x.clone()
                for _ in range(steps):
                    grad = _input_grad(logits_fn, adv, y)
                    adv = torch.clamp(adv.detach().add_(grad.sign_(), alpha=step_size), low, high)
            else:
                delta = start if start is not None else torch.zeros_like(x)
                if clip is not None:
                    delta = (x + delta).clamp(*clip) - x
                for _ in range(steps):
                    grad = _input_grad(logits_fn, x + delta, y)
                    delta = project(delta + step_size * grad / _flat_norm(grad), eps, "l2")
                    if clip is not None:
                        delta = (x + delta).clamp(*clip) - x
                adv = x + delta
            adv = adv.detach()
            if restarts <= 1:
                return adv  # one start: every sample keeps its last iterate, no extra forward pass
            with torch.no_grad():
                now = logits_fn(adv).argmax(dim=1) != y
            if best is None:
                best = adv.clone()
            else:
                take = now & ~fooled
                best[take] = adv[take]
            fooled |= now
    return best


def fgsm(logits_fn: LogitsFn, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: Norm = "linf",
         clip: tuple[float, float] | None = None) -> torch.Tensor:
    """Fast gradient (sign) method: one step of size ε, no random start."""
    return pgd(logits_fn, x, y, eps=eps, norm=norm, steps=1, step_size=eps, restarts=1, random_start=False, clip=clip)


# ------------------------------------------------------------------------------------- text


def _char_edit(word: str, rng: "np.random.Generator") -> str:  # noqa: F821 - numpy imported lazily below
    if not word:
        return word
    i = int(rng.integers(0, len(word)))
    op = int(rng.integers(0, 3)) if len(word) > 1 else 2
    letter = chr(int(rng.integers(97, 123)))
    if op == 0 and i < len(word) - 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swap neighbours
    if op == 1:
        return word[:i] + word[i + 1 :]  # delete
    return word[:i] + letter + word[i:]  # insert


def char_edit_attack(predict_proba: Callable[[list[str]], "np.ndarray"], texts: list[str], labels: "np.ndarray",  # noqa: F821
                     *, budget: int = 3, candidates: int = 16, seed: int = 0,
                     max_queries: int | None = None) -> tuple[list[str], "np.ndarray", "np.ndarray"]:  # noqa: F821
    """Greedy black-box character-edit attack under an edit budget.

    Each round proposes ``candidates`` single-character edits (swap, deletion, insertion) per
    text, scores all of them in one batch, and keeps the edit that lowers the true-class
    probability most; it stops for a text once the prediction flips. Returns the adversarial
    texts, the number of edits used per text (0 where the first prediction was already wrong) and
    the texts scored per text (the original and every proposal): at most ``max_queries`` when given,
    the last round's proposals cut to what is left of it.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    current = list(texts)
    probs = predict_proba(current)
    edits = np.zeros(len(texts), dtype=np.int64)
    queries = np.ones(len(texts), dtype=np.int64)
    cap = max_queries if max_queries is not None else 1 + budget * candidates
    active = probs.argmax(1) == labels
    for _ in range(budget):
        active &= queries < cap
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        proposals, owner = [], []
        for i in idx:
            words = current[i].split(" ")
            for _ in range(min(candidates, cap - int(queries[i]))):
                j = int(rng.integers(0, len(words)))
                cand = words.copy()
                cand[j] = _char_edit(cand[j], rng)
                proposals.append(" ".join(cand))
                owner.append(i)
        p = predict_proba(proposals)
        owner_arr = np.array(owner)
        true_p = p[np.arange(len(proposals)), labels[owner_arr]]
        for i in idx:
            mine = np.flatnonzero(owner_arr == i)
            queries[i] += len(mine)
            best = mine[np.argmin(true_p[mine])]
            current[i] = proposals[best]
            edits[i] += 1
            if p[best].argmax() != labels[i]:
                active[i] = False
    return current, edits, queries
