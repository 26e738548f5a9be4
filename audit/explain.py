"""Attribution methods on the field's libraries, and measures of how far each can be trusted.

Gradient methods here (all on the adapter's raw-input module, preprocessing included, batched on its
device): Captum's Integrated Gradients, Saliency and GradientSHAP, and SHAP's GradientExplainer.
Gradient-free methods (LIME, KernelSHAP) are in ``audit.explain_blackbox``; word-level methods for
raw-string text models in ``audit.explain_text``. The faithfulness measures below take any callable
that returns logits, so they check every method the same way.

Faithfulness measures:

- deletion / insertion curves (Petsiuk et al. 2018): features are removed from the input (set to
  the baseline), or added to the baseline, most important first; the areas under the target
  probability curves summarise them (deletion: lower is better; insertion: higher is better);
- Captum's infidelity and max-sensitivity (Yeh et al. 2019);
- agreement between methods: Spearman rank correlation of attributions;
- the model-parameter randomisation test (Adebayo et al. 2018): attributions of a model whose
  weights were re-initialised should differ; a method whose maps barely change is flagged.

References
----------
Sundararajan, Taly, Yan. "Axiomatic Attribution for Deep Networks", ICML 2017.
Lundberg, Lee. "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.
Petsiuk, Das, Saenko. "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018.
Yeh et al. "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019.
Adebayo et al. "Sanity Checks for Saliency Maps", NeurIPS 2018.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

Attributor = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator for libraries that draw from it; restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor,
                         n_steps: int = 32, internal_batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum IG; returns attributions and the completeness (convergence) delta per sample."""
    from captum.attr import IntegratedGradients

    attr, delta = IntegratedGradients(model).attribute(
        x, baselines=baseline, target=target, n_steps=n_steps, internal_batch_size=internal_batch_size,
        return_convergence_delta=True)
    return attr.detach(), delta.detach()


def saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    from captum.attr import Saliency

    return Saliency(model).attribute(x, target=target, abs=True).detach()


def gradient_shap(model: nn.Module, x: torch.Tensor, target: torch.Tensor, background: torch.Tensor,
                  n_samples: int = 16, seed: int = 0) -> torch.Tensor:
    from captum.attr import GradientShap

    torch.manual_seed(seed)
    with seeded_numpy(seed):  # Captum draws the baselines and the path points from NumPy's global generator
        return GradientShap(model).attribute(x, baselines=background, target=target, n_samples=n_samples,
                                             stdevs=0.0).detach()


class _OneLogit(nn.Module):
    """The logit of one class, as a one-output model (so SHAP takes one gradient per sample, not one per class)."""

    def __init__(self, model: nn.Module | Callable[[torch.Tensor], torch.Tensor], cls: int) -> None:
        super().__init__()
        self.model, self.cls = model, cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.cls : self.cls + 1]


def shap_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor, background: torch.Tensor,
                  n_samples: int = 64, seed: int = 0) -> torch.Tensor:
    """SHAP's GradientExplainer (expected gradients), for the given target class per sample.

    The samples are explained one target class at a time, through a one-output view of the model,
    so SHAP computes the gradients of the target logit only (SHAP's default takes every class's).
    """
    import shap

    out = torch.zeros(x.shape, dtype=torch.float32)
    tgt = target.cpu()
    for cls in torch.unique(tgt).tolist():
        rows = tgt == cls
        explainer = shap.GradientExplainer(_OneLogit(model, int(cls)), background)
        values = np.asarray(explainer.shap_values(x[rows.to(x.device)], nsamples=n_samples, rseed=seed))
        out[rows] = torch.from_numpy(np.ascontiguousarray(values.reshape(values.shape[: x.dim()]))).float()
    return out


def pick_samples(probs: np.ndarray, y: np.ndarray | None, n: int, rng: np.random.Generator,
                  errors_fraction: float = 1 / 3, uncertain_fraction: float = 1 / 3) -> tuple[np.ndarray, list[str]]:
    """Rows to explain: the most confident errors, the least confident predictions, then random rows.

    ``errors_fraction`` and ``uncertain_fraction`` of the ``n`` rows come from the first two
    groups (errors only when labels ``y`` are given); a row is never picked twice. Returns the row
    indices and, per row, why it was chosen.
    """
    conf = probs.max(1)
    chosen: list[int] = []
    why: list[str] = []
    n_err = int(round(n * errors_fraction))
    if y is not None and n_err:
        wrong = np.flatnonzero(probs.argmax(1) != y)
        for i in wrong[np.argsort(-conf[wrong], kind="stable")][:n_err]:
            chosen.append(int(i))
            why.append("confident error")
    taken = set(chosen)
    limit = len(chosen) + int(round(n * uncertain_fraction))
    for i in np.argsort(conf, kind="stable"):
        if len(chosen) >= min(limit, n):
            break
        if int(i) not in taken:
            chosen.append(int(i))
            taken.add(int(i))
            why.append("least confident")
    for i in rng.permutation(len(probs)):
        if len(chosen) >= n:
            break
        if int(i) not in taken:
            chosen.append(int(i))
            taken.add(int(i))
            why.append("random")
    return np.array(chosen, dtype=np.int64), why


def _order(attr: torch.Tensor) -> torch.Tensor:
    """Feature indices per sample, most important (highest attribution) first."""
    return attr.flatten(1).argsort(dim=1, descending=True)


@torch.no_grad()
def deletion_insertion(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor, attr: torch.Tensor,
                       baseline: torch.Tensor, n_steps: int = 16, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Target-class probability as features are deleted / inserted in attribution order.

    Returns two ``(n_steps + 1, n)`` arrays; their means over steps are the areas under the curves.
    """
    n = x.shape[0]
    flat_x, flat_b = x.flatten(1), baseline.expand_as(x).flatten(1)
    d = flat_x.shape[1]
    order = _order(attr)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(d, device=order.device).expand(n, d))
    fractions = torch.linspace(0, 1, n_steps + 1)
    deletions, insertions = [], []
    for frac in fractions:
        k = int(round(float(frac) * d))
        keep_top = ranks < k  # the k most important features
        deletions.append(torch.where(keep_top, flat_b, flat_x))
        insertions.append(torch.where(keep_top, flat_x, flat_b))
    batch = torch.cat(deletions + insertions).view(-1, *x.shape[1:])
    probs = torch.cat([torch.softmax(model(batch[i : i + batch_size]), dim=1)
                       for i in range(0, len(batch), batch_size)])
    tgt = target.repeat(2 * (n_steps + 1))
    p = probs[torch.arange(len(batch)), tgt].view(2, n_steps + 1, n).cpu().numpy()
    return p[0], p[1]


def sensitivity(explain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor,
                radius: float, n_perturb: int = 8, seed: int = 0) -> torch.Tensor:
    """Captum's max-sensitivity per sample: the largest relative change of the explanation when the
    input moves uniformly within an L∞ ball of ``radius`` (Yeh et al. 2019). Lower is more stable."""
    from captum.metrics import sensitivity_max

    def fn(inputs: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor) -> tuple[torch.Tensor]:
        with torch.enable_grad():  # captum runs the metric under no_grad; gradient explainers need autograd
            return (explain(inputs[0] if isinstance(inputs, tuple) else inputs, target),)

    torch.manual_seed(seed)
    return sensitivity_max(fn, x, perturb_radius=radius, n_perturb_samples=n_perturb, target=target).detach()


def infidelity(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor, attr: torch.Tensor,
               noise_scale: float, n_perturb: int = 8, seed: int = 0) -> torch.Tensor:
    """Captum's infidelity per sample (Yeh et al. 2019): the mean over Gaussian perturbations ``I`` of standard
    deviation ``noise_scale`` of ``(sum(I * attr) - (f_t(x) - f_t(x - I)))**2``, ``f_t`` the target logit.

    Zero when the attributions predict the effect of every small perturbation exactly (a linear model's
    gradient); lower is more faithful. The noise is seeded, so every method is scored on the same perturbations.
    """
    from captum.metrics import infidelity as captum_infidelity

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(seed)).to(inputs) * noise_scale
        return noise, inputs - noise

    return captum_infidelity(model, perturb, x, attr, target=target, n_perturb_samples=n_perturb).detach()


def rank_agreement(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean over samples of the Spearman correlation of two attribution maps.

    ``mask`` (broadcastable to ``a``) keeps only the positions that are True: the randomisation check
    passes where the input differs from the baseline, because path methods give exactly zero at
    every position equal to the baseline whatever the weights (blank image borders), and those
    shared zeros would make any two maps look alike.
    """
    values = []
    keep = None if mask is None else torch.broadcast_to(mask, a.shape).flatten(1).cpu().numpy()
    for i, (u, v) in enumerate(zip(a.flatten(1).cpu().numpy(), b.flatten(1).cpu().numpy())):
        if keep is not None:
            u, v = u[keep[i]], v[keep[i]]
        if u.size < 2 or np.ptp(u) == 0 or np.ptp(v) == 0:
            continue
        values.append(spearmanr(u, v).statistic)
    return float(np.mean(values)) if values else float("nan")


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every parameter re-initialised (full randomisation)."""
    clone = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in clone.parameters():
            p.copy_(torch.randn(p.shape, generator=gen).to(p) * (p.std().clamp_min(1e-3) if p.numel() > 1 else 1.0))
    return clone
