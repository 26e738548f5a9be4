"""Backdoor triggers, trigger reverse-engineering (Neural Cleanse) and the MAD anomaly index, used by
the checks in ``audit/checks/poisoning.py``.

Image triggers are ART's (``art.attacks.poisoning.perturbations``: ``add_pattern_bd``,
``add_single_bd``) applied through ``PoisoningAttackBackdoor``; a tabular trigger sets chosen
features to a fixed value outside their training range. Neural Cleanse is written here in torch
because ART (1.20) ships it for Keras only; its outlier rule is ART's
(``NeuralCleanseMixin.outlier_detection``), and the tests check that the two agree.

References
----------
Gu, Dolan-Gavitt, Garg. "BadNets: Identifying Vulnerabilities in the Machine Learning Model Supply
Chain", 2017.
Wang et al. "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks", S&P 2019.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from audit.errors import InputError

TriggerKind = Literal["pattern", "pixel"]
#: Consistency constant that makes the MAD a consistent estimator of the standard deviation of a normal.
MAD_CONSISTENCY = 1.4826


@dataclass(frozen=True)
class Trigger:
    """A backdoor trigger: ``apply(x)`` returns triggered copies of raw inputs ``x``."""

    kind: str
    description: str
    apply: Callable[[np.ndarray], np.ndarray]


def image_trigger(shape: tuple[int, ...], kind: TriggerKind = "pattern", *, value: float = 1.0,
                  distance: int = 1) -> Trigger:
    """ART's pattern (four-pixel checkerboard) or single-pixel trigger near the bottom-right corner.

    ``shape`` is one input's shape: ``(C, H, W)`` (channels first) or ``(H, W)``.
    """
    from art.attacks.poisoning import PoisoningAttackBackdoor
    from art.attacks.poisoning.perturbations import add_pattern_bd, add_single_bd

    if len(shape) not in (2, 3):
        raise InputError(f"an image trigger needs (C, H, W) or (H, W) inputs; these have shape {shape}.")
    h, w = shape[-2:]
    if min(h, w) < distance + 3:
        raise InputError(f"images of {h}x{w} pixels are too small for a trigger {distance} pixel(s) from the corner.")
    channels_first = len(shape) == 3
    if kind == "pattern":
        def perturb(x: np.ndarray) -> np.ndarray:
            return add_pattern_bd(x, distance=distance, pixel_value=value, channels_first=channels_first)
    else:
        def perturb(x: np.ndarray) -> np.ndarray:
            if channels_first:  # add_single_bd takes channels last
                return np.moveaxis(add_single_bd(np.moveaxis(x, 1, -1), distance=distance, pixel_value=value), -1, 1)
            return add_single_bd(x, distance=distance, pixel_value=value)

    attack = PoisoningAttackBackdoor(perturb)

    def apply(x: np.ndarray) -> np.ndarray:
        return attack.poison(x, y=np.zeros(len(x)))[0].astype(x.dtype, copy=False)

    what = "four-pixel checkerboard pattern" if kind == "pattern" else "single pixel"
    return Trigger(kind=f"image/{kind}", apply=apply,
                   description=f"ART {'add_pattern_bd' if kind == 'pattern' else 'add_single_bd'}: {what} set to "
                               f"{value:g}, {distance} pixel(s) from the bottom-right corner")


def tabular_trigger(reference: np.ndarray, features: list[int] | None = None, n_features: int = 2,
                    offset: float = 1.0, feature_names: list[str] | None = None) -> Trigger:
    """Set chosen features to a fixed value outside their range in ``reference``: ``max + offset·(max − min)``.

    Without ``features``, the ``n_features`` features with the largest variance are used.
    """
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim != 2:
        raise InputError(f"a tabular trigger needs (samples, features) inputs; these have shape {ref.shape}.")
    n = ref.shape[1]
    if features is None:
        features = sorted(np.argsort(-ref.var(axis=0), kind="stable")[: min(n_features, n)].tolist())
    bad = [f for f in features if not 0 <= f < n]
    if bad or not features:
        raise InputError(f"trigger_features {bad or features} must be feature indices in 0..{n - 1}.")
    lo, hi = ref[:, features].min(axis=0), ref[:, features].max(axis=0)
    values = hi + offset * np.maximum(hi - lo, 1.0)
    cols = np.asarray(features)

    def apply(x: np.ndarray) -> np.ndarray:
        out = np.array(x, copy=True)
        out[:, cols] = values.astype(out.dtype)
        return out

    names = [feature_names[f] if feature_names and f < len(feature_names) else f"#{f}" for f in features]
    desc = ", ".join(f"{nm} = {v:.4g}" for nm, v in zip(names, values))
    return Trigger(kind="tabular/out-of-range", apply=apply,
                   description=f"features set to a fixed value outside their training range: {desc}")


def poison_indices(y: np.ndarray, target: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``round(rate·n)`` seeded indices of samples not of class ``target`` (the samples to poison)."""
    candidates = np.flatnonzero(y != target)
    k = min(int(round(rate * len(y))), len(candidates))
    return np.sort(rng.choice(candidates, k, replace=False)) if k else np.zeros(0, dtype=np.int64)


def attack_success(y_true: np.ndarray, pred_clean: np.ndarray, pred_triggered: np.ndarray, target: int
                   ) -> tuple[int, int]:
    """The backdoor's attack success as BadNets and ART evaluate it: ``(hits, n)``, where ``n`` counts the
    evaluation samples not of class ``target`` that the model classifies correctly without the trigger and
    ``hits`` those of them it classifies as ``target`` with it. Samples the model already gets wrong (sent to the
    target, or elsewhere) without the trigger are left out: their prediction is no backdoor's doing.

    ``pred_clean`` holds the predictions on every sample of ``y_true``; ``pred_triggered`` those on the samples not
    of class ``target``, triggered, in their order. ``n`` is 0 when the model classifies none of them correctly:
    the rate is then undefined, not 0 or 1.
    """
    y, clean, trig = np.asarray(y_true), np.asarray(pred_clean), np.asarray(pred_triggered)
    victims = y != target
    if len(clean) != len(y) or len(trig) != int(victims.sum()):
        raise ValueError(f"{len(clean)} clean and {len(trig)} triggered predictions for {len(y)} samples, "
                         f"{int(victims.sum())} of them not of class {target}.")
    eligible = clean[victims] == y[victims]
    return int((trig[eligible] == target).sum()), int(eligible.sum())


def mad_anomaly_index(values: np.ndarray, min_scale: float = 0.0) -> np.ndarray:
    """``|v − median| / max(1.4826·MAD, min_scale)`` per value (Neural Cleanse's anomaly index); 0 everywhere when
    that scale is 0. ``min_scale`` is the smallest difference that counts as spread (the text trigger search
    floors it at one text's share of a flip rate, so a lone flipping word among words that flip nothing stands out)."""
    v = np.asarray(values, dtype=np.float64)
    med = np.median(v)
    mad = max(MAD_CONSISTENCY * np.median(np.abs(v - med)), min_scale)
    if mad == 0:
        return np.zeros_like(v)
    return np.abs(v - med) / mad


def flagged_by_anomaly(values: np.ndarray, threshold: float = 2.0) -> np.ndarray:
    """Neural Cleanse's (and ART's) rule: flagged when below the median and anomaly index > threshold."""
    v = np.asarray(values, dtype=np.float64)
    return (v <= np.median(v)) & (mad_anomaly_index(v) > threshold)


@dataclass(frozen=True)
class ReverseEngineered:
    """Result of Neural Cleanse: per class, the smallest trigger mask found and whether it succeeded."""

    mask_l1: np.ndarray  # (classes,)
    success: np.ndarray  # (classes,) attack success rate of the best (or last) trigger
    reached: np.ndarray  # (classes,) bool: the success threshold was reached
    masks: np.ndarray  # (classes, *mask_shape)
    patterns: np.ndarray  # (classes, *input_shape)
    steps_used: np.ndarray  # (classes,) optimisation steps each class ran before it stopped


def reverse_engineer_triggers(logits_fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, n_classes: int, *,
                              low: np.ndarray | float, high: np.ndarray | float, channel_axis: bool,
                              steps: int = 300, batch_size: int = 32, max_batch: int | None = None, lr: float = 0.1,
                              init_cost: float = 1e-3, success_threshold: float = 0.99, patience: int = 5,
                              cost_multiplier: float = 1.5, early_stop_patience: int = 50,
                              early_stop_factor: float = 0.99, device: torch.device | str = "cpu",
                              seed: int = 0) -> ReverseEngineered:
    """Neural Cleanse: for every class, the smallest mask ``m`` and pattern ``p`` such that
    ``(1 − m)·x + m·p`` is classified as that class.

    Minimises ``CE(f(x'), target) + cost·‖m‖₁`` with Adam on tanh-parametrised ``m ∈ [0, 1]`` and
    ``p ∈ [low, high]``; the cost rises (×``cost_multiplier``) after ``patience`` steps at or above
    ``success_threshold`` and falls (÷``cost_multiplier``^1.5) after ``patience`` steps below, as in
    Wang et al. (2019) and ART's Keras version. Every class has its own mask, pattern, cost and Adam
    state, so the classes' optimisations are independent: each step draws one batch of
    ``batch_size`` samples and runs all classes still optimising as (class, sample) rows through the
    model together, at most ``max_batch`` rows per forward and backward pass (gradients accumulate
    over the chunks), with the model's parameters frozen. A class stops early once it has converged:
    it has been at the trade-off (after a working trigger, its cost was lowered because the trigger
    stopped working, as ART requires its cost to have gone up and down) and for ``early_stop_patience``
    steps no working mask has been smaller than ``early_stop_factor`` times the one the count last
    restarted at (ART compares with the previous step, so a mask shrinking 0.5% a step would stop).
    The steps each class ran are returned (``early_stop_patience=0`` runs every class for ``steps``).

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
    max_batch : int, optional
        Rows per forward pass (default: every class's ``batch_size`` samples in one pass).
    """
    from audit.attacks import frozen_parameters

    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    shape = tuple(xt.shape[1:])
    mask_shape = (1, *shape[1:]) if channel_axis else shape
    lo = torch.as_tensor(np.array(np.broadcast_to(low, shape)), dtype=torch.float32, device=dev)
    hi = torch.as_tensor(np.array(np.broadcast_to(high, shape)), dtype=torch.float32, device=dev)
    k = n_classes
    n = len(xt)
    b = min(batch_size, n)
    chunk = max(1, max_batch or k * b)
    init = torch.rand((k, *shape), generator=gen) * 2 - 1
    mask_raw = [torch.zeros(mask_shape, device=dev, requires_grad=True) for _ in range(k)]
    pattern_raw = [init[c].to(dev).requires_grad_(True) for c in range(k)]
    opt = torch.optim.Adam(mask_raw + pattern_raw, lr=lr, betas=(0.5, 0.9))  # per-parameter state: one per class
    cost = torch.full((k,), init_cost)
    best_l1 = torch.full((k,), float("inf"))
    best_mask = torch.zeros((k, *mask_shape))
    best_pattern = torch.zeros((k, *shape))
    best_success = torch.zeros(k)
    last_success = torch.zeros(k)
    up = torch.zeros(k, dtype=torch.long)
    down = torch.zeros(k, dtype=torch.long)
    stale = torch.zeros(k, dtype=torch.long)
    stop_ref = torch.full((k,), float("inf"))
    steps_used = torch.zeros(k, dtype=torch.long)
    active = torch.ones(k, dtype=torch.bool)
    frontier = torch.zeros(k, dtype=torch.bool)

    def triggers(classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.tanh(torch.stack([mask_raw[c] for c in classes])) / 2 + 0.5
        pattern = lo + (torch.tanh(torch.stack([pattern_raw[c] for c in classes])) / 2 + 0.5) * (hi - lo)
        return mask, pattern

    with frozen_parameters(logits_fn):
        for _ in range(steps):
            live = active.nonzero().flatten().tolist()
            if not live:
                break
            xb = xt[torch.randint(0, n, (b,), generator=gen)].to(dev)
            opt.zero_grad(set_to_none=True)
            hits = torch.zeros(len(live), device=dev)
            live_t = torch.as_tensor(live, device=dev)
            for start in range(0, len(live) * b, chunk):  # (class, sample) rows, class-major, chunk rows a pass
                end = min(start + chunk, len(live) * b)
                first, last = start // b, (end - 1) // b
                cls = torch.arange(start, end, device=dev) // b
                mask, pattern = triggers(live[first : last + 1])
                # each class's rows by broadcasting its mask and pattern over its samples (no per-row copies of the
                # mask, whose gathered backward dominated a step at 224×224)
                adv = torch.cat([(1 - mask[j - first]) * xb[max(start - j * b, 0) : min(end - j * b, b)]
                                 + mask[j - first] * pattern[j - first] for j in range(first, last + 1)])
                logits = logits_fn(adv)
                target = live_t[cls]
                (torch.nn.functional.cross_entropy(logits, target, reduction="sum") / b).backward()
                hits.index_add_(0, cls, (logits.detach().argmax(1) == target).float())
            mask, pattern = triggers(live)  # the trigger this step measured, before Adam moves it
            l1 = mask.flatten(1).sum(1)
            (cost[live].to(dev) * l1).sum().backward()
            opt.step()
            idx = torch.as_tensor(live)
            success = (hits / b).cpu()
            l1c = l1.detach().cpu()
            ok = success >= success_threshold
            better = ok & (l1c < best_l1[idx])
            # converged: no working mask 1% smaller than the one the count last restarted at (not ART's
            # step-to-step 1%, which a mask shrinking by 0.5% a step for 50 steps passes)
            improved = ok & (l1c < early_stop_factor * stop_ref[idx])
            stop_ref[idx[improved]] = l1c[improved]
            stale[idx] = torch.where(improved, 0, stale[idx] + torch.isfinite(stop_ref[idx]).long())
            upd = idx[better]
            best_l1[upd] = l1c[better]
            best_mask[upd] = mask.detach().cpu()[better]
            best_pattern[upd] = pattern.detach().cpu()[better]
            best_success[upd] = success[better]
            last_success[idx] = success
            up[idx] = torch.where(ok, up[idx] + 1, 0)
            down[idx] = torch.where(ok, 0, down[idx] + 1)
            raise_cost, lower_cost = idx[up[idx] >= patience], idx[down[idx] >= patience]
            cost[raise_cost] *= cost_multiplier
            cost[lower_cost] /= cost_multiplier**1.5
            # at the trade-off: after a working trigger, the cost was raised until the trigger failed and lowered
            frontier[lower_cost[torch.isfinite(best_l1[lower_cost])]] = True
            up[raise_cost] = 0
            down[lower_cost] = 0
            steps_used[idx] += 1
            if early_stop_patience:
                active[idx[frontier[idx] & (stale[idx] >= early_stop_patience)]] = False
    reached = torch.isfinite(best_l1)
    with torch.no_grad():  # classes that never reached the threshold: keep the last mask (as ART does)
        mask, pattern = (t.cpu() for t in triggers(list(range(k))))
    l1 = torch.where(reached, best_l1, mask.flatten(1).sum(1))
    best_mask[~reached] = mask[~reached]
    best_pattern[~reached] = pattern[~reached]
    best_success[~reached] = last_success[~reached]
    return ReverseEngineered(mask_l1=l1.numpy().astype(np.float64), success=best_success.numpy().astype(np.float64),
                             reached=reached.numpy(), masks=best_mask.numpy(), patterns=best_pattern.numpy(),
                             steps_used=steps_used.numpy())


def _jit_copy(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer, map_location="cpu")


def trainable_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``module`` that ART may move and train.

    ``copy.deepcopy`` of a TorchScript module gives parameters that are not leaves (an optimizer
    refuses them), so scripted parts are copied by saving and loading them instead.
    """
    if isinstance(module, torch.jit.ScriptModule):
        return _jit_copy(module)
    memo: dict[int, Any] = {}

    def visit(m: torch.nn.Module) -> None:
        for child in m.children():
            if isinstance(child, torch.jit.ScriptModule):
                memo[id(child)] = _jit_copy(child)
            else:
                visit(child)

    visit(module)
    return copy.deepcopy(module, memo)


def feature_classifier(module: torch.nn.Module, input_shape: tuple[int, ...], n_classes: int, *,
                       x_reference: np.ndarray, features: np.ndarray, clip_values: tuple[float, float] | None,
                       refit_epochs: int = 10, refit_batch_size: int = 64, lr: float = 1e-3) -> Any:
    """An ART ``PyTorchClassifier`` whose activations are the model's penultimate features.

    ART's ``ActivationDefence`` and ``SpectralSignatureDefense`` take the activations of the
    classifier's *last* layer, which for a torch model are the logits. Both methods are defined on
    the penultimate representation (Chen et al. 2018; Tran et al. 2018), so this classifier answers
    ``get_activations`` on the training set with the adapter's penultimate features. Exclusionary
    reclassification refits a fresh copy for ``refit_epochs`` epochs (ART's default of 10 epochs in
    batches of 128 leaves a small model under-trained, which made clean clusters look suspicious).
    ART moves ``module`` to the CPU: pass a copy when the original must stay on its device.
    """
    from art.estimators.classification import PyTorchClassifier

    class _FeatureClassifier(PyTorchClassifier):
        _x_ref: np.ndarray | None = None
        _features: np.ndarray | None = None
        _refit = (refit_epochs, refit_batch_size)

        def get_activations(self, x, layer=None, batch_size=128, framework=False):  # type: ignore[override]
            if self._x_ref is not None and x is self._x_ref:
                return self._features
            return super().get_activations(x, layer=layer, batch_size=batch_size, framework=framework)

        def fit(self, x, y, batch_size=128, nb_epochs=10, **kwargs):  # type: ignore[override]
            torch.manual_seed(0)
            super().fit(x, y, batch_size=self._refit[1], nb_epochs=self._refit[0], **kwargs)

    clf = _FeatureClassifier(module, loss=torch.nn.CrossEntropyLoss(), input_shape=input_shape, nb_classes=n_classes,
                             optimizer=torch.optim.Adam(module.parameters(), lr=lr), clip_values=clip_values,
                             device_type="cpu")
    clf._x_ref = x_reference
    clf._features = features
    return clf
