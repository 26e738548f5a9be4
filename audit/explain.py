"""Attribution methods on the field's libraries, and measures of how far each can be trusted.

Methods (all on the adapter's raw-input module, preprocessing included, batched on its device):
Captum's Integrated Gradients, Saliency and GradientSHAP, and SHAP's GradientExplainer.

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

import copy
from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

Attributor = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


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
    return GradientShap(model).attribute(x, baselines=background, target=target, n_samples=n_samples,
                                         stdevs=0.0).detach()


def shap_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor, background: torch.Tensor,
                  n_samples: int = 64, seed: int = 0) -> torch.Tensor:
    """SHAP's GradientExplainer (expected gradients), for the given target class per sample."""
    import shap

    explainer = shap.GradientExplainer(model, background)
    values = explainer.shap_values(x, nsamples=n_samples, rseed=seed)
    arr = np.asarray(values)  # (n, *input_shape, classes) for a multi-output model
    picked = np.moveaxis(arr, -1, 0)[target.cpu().numpy(), np.arange(len(x))]
    return torch.from_numpy(np.ascontiguousarray(picked)).float()


def _order(attr: torch.Tensor) -> torch.Tensor:
    """Feature indices per sample, most important (highest attribution) first."""
    return attr.flatten(1).argsort(dim=1, descending=True)


@torch.no_grad()
def deletion_insertion(model: nn.Module, x: torch.Tensor, target: torch.Tensor, attr: torch.Tensor,
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


def rank_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over samples of the Spearman correlation of two attribution maps."""
    values = []
    for u, v in zip(a.flatten(1).cpu().numpy(), b.flatten(1).cpu().numpy()):
        if np.ptp(u) == 0 or np.ptp(v) == 0:
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
