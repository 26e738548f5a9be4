"""Attribution methods on the field's libraries, and measures of how far each can be trusted.

Gradient methods here (all on the adapter's raw-input module, preprocessing included, batched on its
device): Captum's Integrated Gradients, Saliency and GradientSHAP, and SHAP's GradientExplainer.

Memory is bounded by a batch size, not by pixels × samples explained × method samples: given
``internal_batch_size`` (attributions) or ``batch_size`` (curves and metrics), no model call made
here — forward, or forward and backward — takes more than that many inputs (Integrated Gradients:
at most ``max(batch_size, 2)``, Captum's floor of two path points per call). Sampled methods
(GradientSHAP, SHAP's GradientExplainer) draw every baseline and path point first, exactly as Captum and
SHAP do, then evaluate them in chunks and average (:func:`expected_gradients`), so chunked and one-pass
attributions are the same numbers.
``None`` keeps the libraries' one-pass behaviour (the unbounded reference the tests compare with).
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

def row_chunks(n: int, size: int | None) -> list[slice]:
    """Consecutive slices of ``range(n)`` of at most ``size`` rows each (one slice when ``size`` is None)."""
    step = n if size is None else max(int(size), 1)
    return [slice(i, min(i + step, n)) for i in range(0, n, max(step, 1))]


@torch.no_grad()
def batched_forward(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """``model(x)`` computed ``batch_size`` rows at a time, without gradients."""
    return torch.cat([model(x[s]) for s in row_chunks(len(x), batch_size)])


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
    """Captum IG; returns attributions and the completeness (convergence) delta per sample.

    Captum's ``internal_batch_size`` splits the ``n × n_steps`` path points of one call, but never below
    two path points per input; so the inputs are also split into groups of ``internal_batch_size // 2``
    and each call packs at most ``max(internal_batch_size, 2)`` points.
    """
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)
    rows = None if internal_batch_size is None else max(internal_batch_size // 2, 1)
    attrs, deltas = [], []
    for s in row_chunks(len(x), rows):
        b = baseline[s] if baseline.shape[0] == len(x) and len(x) > 1 else baseline
        attr, delta = ig.attribute(x[s], baselines=b, target=target[s], n_steps=n_steps,
                                   internal_batch_size=internal_batch_size, return_convergence_delta=True)
        attrs.append(attr.detach())
        deltas.append(delta.detach())
    return torch.cat(attrs), torch.cat(deltas)


def saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor,
             internal_batch_size: int | None = None) -> torch.Tensor:
    """Captum's Saliency (absolute input gradient of the target logit), ``internal_batch_size`` inputs per call."""
    from captum.attr import Saliency

    sal = Saliency(model)
    return torch.cat([sal.attribute(x[s], target=target[s], abs=True).detach()
                      for s in row_chunks(len(x), internal_batch_size)])


def gradient_shap(model: nn.Module, x: torch.Tensor, target: torch.Tensor, background: torch.Tensor,
                  n_samples: int = 16, seed: int = 0, internal_batch_size: int | None = None) -> torch.Tensor:
    """Captum's GradientSHAP (``stdevs=0``): the mean over ``n_samples`` draws of ``(x - b) * grad f_t(b + a (x - b))``,
    ``b`` a random background row and ``a ~ U(0, 1)`` (expected gradients).

    Without ``internal_batch_size`` this is Captum's one pass over all ``len(x) × n_samples`` points. With it, the
    background rows and path coefficients are drawn first with Captum's calls in Captum's order (one
    ``np.random.choice``, then one ``np.random.uniform``, from the seeded global generator), and the points are
    evaluated ``internal_batch_size`` at a time and summed per input: the same numbers, up to float rounding.
    """
    from captum.attr import GradientShap

    if internal_batch_size is None:
        # Captum draws the baselines and path points from NumPy's global generator, and zero noise (stdevs=0) from
        # torch's: both are restored afterwards, so a caller's draws (max-sensitivity's perturbations) do not
        # depend on which path ran.
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), seeded_numpy(seed):
            return GradientShap(model).attribute(x, baselines=background, target=target, n_samples=n_samples,
                                                 stdevs=0.0).detach()
    n = len(x)
    with seeded_numpy(seed):
        picks = np.random.choice(background.shape[0], n_samples * n)
        coef = np.random.uniform(0.0, 1.0, n_samples * n)
    return expected_gradients(model, x, target, background, picks, coef, n_samples, internal_batch_size)


def expected_gradients(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor,
                       background: torch.Tensor, picks: np.ndarray, coef: np.ndarray, n_samples: int,
                       internal_batch_size: int | None) -> torch.Tensor:
    """Expected gradients from drawn points: for each input ``i``, the mean over its ``n_samples`` points
    ``p = i * n_samples + k`` of ``(x_i - b) * grad f_t(a x_i + (1 - a) b)``, with ``b = background[picks[p]]``
    and ``a = coef[p]``; ``internal_batch_size`` points per forward and backward pass.

    The points are built only a batch at a time, so memory grows with the batch, not with inputs × samples.
    """
    from captum._utils.gradient import compute_gradients

    n = len(x)
    total = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    owner = torch.arange(n, device=x.device).repeat_interleave(n_samples)
    picked = torch.as_tensor(picks, device=x.device)
    scale = torch.tensor(coef, device=x.device, dtype=x.dtype)  # the path coefficient in the inputs' precision
    for s in row_chunks(n * n_samples, internal_batch_size):
        inputs, base = x[owner[s]], background[picked[s]]
        a = scale[s].view(-1, *([1] * (x.dim() - 1)))
        scaled = (a * inputs + (1.0 - a) * base).requires_grad_()
        (grads,) = compute_gradients(model, (scaled,), target[owner[s]])
        total.index_add_(0, owner[s], ((inputs - base) * grads).detach().double())
    return (total / n_samples).to(x.dtype)


class _OneLogit(nn.Module):
    """The logit of one class, as a one-output model (so SHAP takes one gradient per sample, not one per class)."""

    def __init__(self, model: nn.Module | Callable[[torch.Tensor], torch.Tensor], cls: int) -> None:
        super().__init__()
        self.model, self.cls = model, cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.cls : self.cls + 1]


def shap_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor, background: torch.Tensor,
                  n_samples: int = 64, seed: int = 0, internal_batch_size: int | None = None) -> torch.Tensor:
    """SHAP's GradientExplainer (expected gradients), for the given target class per sample.

    The samples are explained one target class at a time, through a one-output view of the model,
    so SHAP computes the gradients of the target logit only (SHAP's default takes every class's).

    Without ``internal_batch_size`` this is ``shap.GradientExplainer`` itself, which holds the ``n_samples``
    points of a sample (and float64 copies of them) at once. With it, SHAP's draws are made with SHAP's calls in
    SHAP's order (per class, the generator seeded with ``seed``; per sample and point, one
    ``np.random.choice`` of a background row, then one ``np.random.uniform``) and the points evaluated
    ``internal_batch_size`` at a time by :func:`expected_gradients`: SHAP's values, up to float rounding.
    """
    import shap

    out = torch.zeros(x.shape, dtype=torch.float32)
    tgt = target.cpu()
    for cls in torch.unique(tgt).tolist():
        rows = tgt == cls
        if internal_batch_size is not None:
            with seeded_numpy(seed):
                draws = np.array([(np.random.choice(background.shape[0]), np.random.uniform())
                                  for _ in range(int(rows.sum()) * n_samples)]).reshape(-1, 2)
            sel = rows.to(x.device)
            out[rows] = expected_gradients(model, x[sel], target[sel], background, draws[:, 0].astype(np.int64),
                                           draws[:, 1], n_samples, internal_batch_size).float().cpu()
            continue
        explainer = shap.GradientExplainer(_OneLogit(model, int(cls)), background)
        with seeded_numpy(seed):  # SHAP reseeds NumPy's global generator with rseed; restore it afterwards
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
                       baseline: torch.Tensor, n_steps: int = 16, batch_size: int | None = 256) -> tuple[np.ndarray, np.ndarray]:
    """Target-class probability as features are deleted / inserted in attribution order.

    Returns two ``(n_steps + 1, n)`` arrays; their means over steps are the areas under the curves.
    The ``2 (n_steps + 1) n`` modified inputs are built ``batch_size`` at a time, as the model takes them
    (all at once when None).
    """
    n = x.shape[0]
    flat_x, flat_b = x.flatten(1), baseline.expand_as(x).flatten(1)
    d = flat_x.shape[1]
    order = _order(attr)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(d, device=order.device).expand(n, d))
    kept = torch.round(torch.linspace(0, 1, n_steps + 1).double() * d).long().to(x.device)  # round half to even, as before
    total = 2 * (n_steps + 1) * n  # rows ordered (curve, step, sample): deletions first, then insertions
    probs = []
    for s in row_chunks(total, batch_size):
        j = torch.arange(s.start, s.stop, device=x.device)
        row, step, insert = j % n, (j // n) % (n_steps + 1), j >= total // 2
        keep_top = ranks[row] < kept[step][:, None]  # the k most important features
        batch = torch.where(keep_top ^ insert[:, None], flat_b[row], flat_x[row])
        p = torch.softmax(model(batch.view(-1, *x.shape[1:])), dim=1)
        probs.append(p[torch.arange(len(j), device=p.device), target[row]])
    p = torch.cat(probs).view(2, n_steps + 1, n).cpu().numpy()
    return p[0], p[1]


def sensitivity(explain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor,
                radius: float, n_perturb: int = 8, seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
    """Captum's max-sensitivity per sample: the largest relative change of the explanation when the
    input moves uniformly within an L∞ ball of ``radius`` (Yeh et al. 2019). Lower is more stable.

    With ``batch_size``, ``explain`` is called on at most ``batch_size`` inputs at a time (the samples
    in groups of ``batch_size``, Captum's ``max_examples_per_batch`` within each group); a sampled
    ``explain`` must bound its own inner batches (``internal_batch_size``).
    """
    from captum.metrics import sensitivity_max

    def fn(inputs: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor) -> tuple[torch.Tensor]:
        with torch.enable_grad():  # captum runs the metric under no_grad; gradient explainers need autograd
            return (explain(inputs[0] if isinstance(inputs, tuple) else inputs, target),)

    torch.manual_seed(seed)
    return torch.cat([sensitivity_max(fn, x[s], perturb_radius=radius, n_perturb_samples=n_perturb, target=target[s],
                                      max_examples_per_batch=_per_batch(batch_size, s, n_perturb)).detach()
                      for s in row_chunks(len(x), batch_size)])


def _per_batch(batch_size: int | None, rows: slice, n_perturb: int) -> int | None:
    """Captum's ``max_examples_per_batch`` for a group of ``rows``: ``batch_size``, within the range Captum accepts."""
    return None if batch_size is None else min(batch_size, (rows.stop - rows.start) * n_perturb)


def infidelity(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor, attr: torch.Tensor,
               noise_scale: float, n_perturb: int = 8, seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
    """Captum's infidelity per sample (Yeh et al. 2019): the mean over Gaussian perturbations ``I`` of standard
    deviation ``noise_scale`` of ``(sum(I * attr) - (f_t(x) - f_t(x - I)))**2``, ``f_t`` the target logit.

    Zero when the attributions predict the effect of every small perturbation exactly (a linear model's
    gradient); lower is more faithful. The noise is seeded, so every method is scored on the same perturbations.
    With ``batch_size`` the model sees at most ``batch_size`` perturbed inputs at a time (Captum's
    ``max_examples_per_batch``, within groups of at most ``batch_size`` samples).
    """
    from captum.metrics import infidelity as captum_infidelity

    gen = torch.Generator().manual_seed(seed)

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(inputs.shape, generator=gen).to(inputs) * noise_scale
        return noise, inputs - noise

    return torch.cat([captum_infidelity(model, perturb, x[s], attr[s], target=target[s], n_perturb_samples=n_perturb,
                                        max_examples_per_batch=_per_batch(batch_size, s, n_perturb)).detach()
                      for s in row_chunks(len(x), batch_size)])


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
