"""Model extraction: how closely can an attacker copy the model from its answers alone?
(EU AI Act Art. 15(5), confidentiality attacks.)

ART's ``CopycatCNN`` (Correia-Silva et al. 2018) queries the model as a black box on a pool of
attacker data, labels the answers with the predicted class, and trains a thief model on them.
It runs once per query budget from the config. The thief is by default a copy of the model's own
architecture with every parameter re-initialised (the attacker knows the architecture, not the
weights); where no copy can be made it is a small MLP for the input shape.

Reported per budget: the thief's **fidelity** (share of evaluation inputs on which it predicts the
same class as the model) and its **accuracy**, with Wilson 95% intervals; the attacker's query
pool and the evaluation inputs never overlap.

References
----------
Correia-Silva, Berriel, Badue, de Souza, Oliveira-Santos. "Copycat CNN: Stealing Knowledge by
Persuading Confession with Random Non-Labeled Data", IJCNN 2018.
Tramèr, Zhang, Juels, Reiter, Ristenpart. "Stealing Machine Learning Models via Prediction APIs",
USENIX Security 2016.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from audit.config import CheckConfig
from audit.context import AuditContext
from audit.errors import SkipCheck
from audit.registry import Check, CheckOutput, register_check
from audit.results import Figure, Metric, Table
from audit.rows import Rows
from audit.stats import wilson_interval


class ExtractionConfig(CheckConfig):
    """Settings of the ``privacy.extraction`` check."""

    renamed: ClassVar[dict[str, str]] = {"n_eval": "max_samples", "batch_size": "train_batch_size"}

    budgets: list[int] = Field(default=[100, 500, 1000], description="Query budgets: victim queries per extraction.")
    thief: Literal["victim", "mlp"] = Field(
        default="victim", description="Thief architecture: a re-initialised copy of the model's own (victim; an MLP "
                                      "where no copy can be made) or a small MLP for the input shape (mlp).")
    epochs: int = Field(default=30, ge=1, description="Training epochs of the thief on the stolen labels.")
    lr: float = Field(default=3e-3, gt=0, description="Adam learning rate of the thief.")
    train_batch_size: int = Field(default=64, ge=1, description="Samples per step when training the thief (was batch_size; model calls use the audit's batch_size).")
    max_samples: int = Field(default=1000, ge=10, description="At most this many evaluation inputs to measure fidelity on (was n_eval).")

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[int]) -> list[int]:
        if not v or any(b < 1 for b in v):
            raise ValueError("budgets must be a non-empty list of positive query counts, e.g. [100, 500, 1000]")
        return sorted(set(v))


def _reinitialise(module: nn.Module, seed: int) -> int:
    """Re-draw every parameter of ``module`` in place; returns how many layers ``reset_parameters`` covered.

    Layers with ``reset_parameters`` use their own initialisation; parameters of other modules
    (e.g. learned position embeddings) are drawn from N(0, 0.02²).
    """
    covered: set[int] = set()
    n_layers = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
                covered.update(id(p) for p in m.parameters(recurse=False))
                n_layers += 1
        with torch.no_grad():
            for p in module.parameters():
                if id(p) not in covered:
                    p.normal_(0.0, 0.02)
    for p in module.parameters():
        p.requires_grad_(True)
    return n_layers


def _mlp(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 128), nn.ReLU(), nn.Linear(128, n_classes))


def _copy_architecture(adapter: Any, example: torch.Tensor, seed: int) -> nn.Module | None:
    """A re-initialised float32 copy of the adapter's model (preprocessing included) that runs on ``example``,
    or None where there is no such copy (TorchScript, quantised or cast weights, no parameters)."""
    module = adapter.torch_model
    if module is None or isinstance(module, torch.jit.ScriptModule):
        return None
    params = list(module.parameters())
    if not params or any(type(p) is not nn.Parameter or p.dtype != torch.float32 for p in params):
        return None
    try:
        core = copy.deepcopy(module)
        if not _reinitialise(core, seed):
            return None
        pre = adapter.preprocess
        thief = nn.Sequential(copy.deepcopy(pre), core) if pre is not None else core
        with torch.no_grad():
            out = thief.eval()(example.to(next(core.parameters()).device))
    except Exception:  # noqa: BLE001 - a model that cannot be copied and re-run gets another thief
        return None
    return thief if isinstance(out, torch.Tensor) and out.dim() == 2 else None


def make_thief(adapter: Any, example: torch.Tensor, n_classes: int, kind: str, seed: int) -> tuple[nn.Module, str]:
    """A fresh thief model from raw inputs to logits, and a one-line description of it.

    ``victim``: the model's own architecture re-initialised; for a quantised or cast variant, the
    architecture of its float twin (the base model); else an MLP for the input shape.
    """
    if kind == "victim":
        for source, what in ((adapter, "the model's architecture"),
                             (adapter.float_twin, "the float twin's architecture")):
            thief = _copy_architecture(source, example, seed) if source is not None else None
            if thief is not None:
                name = type(source.torch_model).__name__
                return thief, f"{name} ({what}, re-initialised)"
    shape = tuple(example.shape[1:])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        thief = _mlp(shape, n_classes)
    why = "" if kind == "mlp" else " (no copy of the model's architecture could be made)"
    return thief, f"MLP {int(np.prod(shape))}-128-{n_classes}{why}"


def _thief_classifier(thief: nn.Module, shape: tuple[int, ...], n_classes: int, lr: float, device: torch.device,
                      fast_fit: bool) -> Any:
    """ART's ``PyTorchClassifier`` for the thief; with ``fast_fit`` its ``fit`` batches by tensor indexing.

    ART's own ``fit`` builds every batch through a ``DataLoader`` item by item, which costs several
    times the training itself on small models. The fast fit runs the same training (shuffled
    mini-batches each epoch, cross-entropy on the stolen class labels, the same optimiser) on
    tensors that stay on the device; ``tests/audit/checks/test_extraction.py`` checks it reaches
    the fidelity of ART's fit.
    """
    from art.estimators.classification import PyTorchClassifier

    class FastFitClassifier(PyTorchClassifier):
        def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, nb_epochs: int = 10,
                **_: Any) -> None:
            model, opt = self.model, self._optimizer
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self._device)
            yt = torch.from_numpy(np.asarray(y).argmax(1) if np.asarray(y).ndim == 2 else np.asarray(y)).long()
            yt = yt.to(self._device)
            model.train()
            for _ in range(nb_epochs):
                order = torch.randperm(len(xt)).to(self._device)
                for start in range(0, len(xt), batch_size):
                    idx = order[start : start + batch_size]
                    if len(idx) < 2 < len(xt):
                        continue  # a batch of one breaks batch normalisation in training mode (ART: drop_last)
                    opt.zero_grad(set_to_none=True)
                    self._loss(model(xt[idx]), yt[idx]).backward()
                    opt.step()

    cls = FastFitClassifier if fast_fit else PyTorchClassifier
    return cls(thief, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam(thief.parameters(), lr=lr),
               input_shape=shape, nb_classes=n_classes, device_type="gpu" if device.type == "cuda" else "cpu")


def copycat_extract(victim_proba: Any, thief: nn.Module, pool: Rows | np.ndarray, *, budget: int, n_classes: int,
                    epochs: int, lr: float, batch_size: int, seed: int, device: torch.device,
                    fast_fit: bool = True) -> nn.Module:
    """Steal ``thief`` from a black-box victim with ART's ``CopycatCNN`` on ``budget`` queries drawn from ``pool``.

    ``victim_proba`` maps a numpy batch of raw inputs to class probabilities; it is the only
    access the attack has to the model. ART reads only the ``budget`` rows it draws from ``pool``, so a
    :class:`~audit.rows.Rows` pool stays unread. ``fast_fit=False`` trains with ART's own
    ``PyTorchClassifier.fit``. Returns the trained thief (in eval mode).
    """
    from art.attacks.extraction import CopycatCNN
    from art.estimators.classification import BlackBoxClassifier

    shape = tuple(pool.shape[1:])
    victim = BlackBoxClassifier(victim_proba, input_shape=shape, nb_classes=n_classes)
    thief = thief.to(device)
    clf = _thief_classifier(thief, shape, n_classes, lr, device, fast_fit)
    attack = CopycatCNN(victim, batch_size_fit=batch_size, batch_size_query=256, nb_epochs=epochs,
                        nb_stolen=min(budget, len(pool)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = np.random.get_state()
        np.random.seed(seed % 2**32)  # ART draws queries and batches from numpy's global generator
        try:
            attack.extract(pool if isinstance(pool, Rows) else pool.astype(np.float32), thieved_classifier=clf)
        finally:
            np.random.set_state(state)
    return thief.eval()


@register_check("privacy.extraction")
class ModelExtraction(Check):
    """Fidelity and accuracy of a copy stolen through black-box queries, per query budget."""

    category = "privacy"
    title = "Model extraction (confidentiality)"
    uses = ("labels",)
    input_kinds = ("image", "tabular", "sequence")
    Config = ExtractionConfig
    metric_names = ("extraction_fidelity", "thief_accuracy", "victim_accuracy")

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: ExtractionConfig = self.config  # type: ignore[assignment]
        adapter, ev = ctx.adapter, ctx.dataset("eval")
        if isinstance(ev.inputs, list):
            raise SkipCheck("the model takes raw text: ART's extraction attacks train a thief on numeric input arrays.")
        if not np.issubdtype(ev.inputs.dtype, np.floating):
            raise SkipCheck("inputs are integer token ids: the thief is trained on continuous input arrays.")
        rng = ctx.rng(self.id)
        ref = ctx.datasets.get("reference")
        if ref is not None and not isinstance(ref.inputs, list) and ref.inputs.shape[1:] == ev.inputs.shape[1:]:
            pool, pool_name = ref.inputs, "data.reference"
            eval_rows = np.arange(len(ev))
        else:
            if len(ev) < 20:
                raise SkipCheck(f"the evaluation set has {len(ev)} samples: too few to split into an attacker's query "
                                "pool and inputs to measure fidelity on (give data.reference as the pool).")
            order = rng.permutation(len(ev))
            half = len(ev) // 2
            pool, pool_name = ev.inputs.subset(np.sort(order[:half])), "half of the evaluation set"
            eval_rows = np.sort(order[half:])
        if len(eval_rows) > cfg.max_samples:
            eval_rows = np.sort(rng.choice(eval_rows, cfg.max_samples, replace=False))
        x_eval = ev.inputs[eval_rows]
        victim_pred = ctx.y_pred()[eval_rows]
        n_classes = int(ctx.logits().shape[1])
        y_true = ev.target[eval_rows] if ev.target is not None else None
        n = len(eval_rows)

        def victim_proba(batch: np.ndarray) -> np.ndarray:
            logits = adapter.predict_logits(np.ascontiguousarray(batch, dtype=np.float32), batch_size=ctx.batch_size)
            return torch.softmax(logits, dim=1).numpy()

        example = torch.from_numpy(np.ascontiguousarray(pool[:2], dtype=np.float32))
        rows, metrics, used = [], [], []
        seed = int(rng.integers(0, 2**31))
        description = ""
        for budget in cfg.budgets:
            queries = min(budget, len(pool))
            if queries in used:
                continue
            used.append(queries)
            thief, description = make_thief(adapter, example, n_classes, cfg.thief, seed)
            thief = copycat_extract(victim_proba, thief, pool, budget=queries, n_classes=n_classes,
                                    epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.train_batch_size, seed=seed,
                                    device=adapter.device)
            with torch.no_grad():
                thief_pred = torch.cat([thief(torch.from_numpy(np.ascontiguousarray(x_eval[i : i + ctx.batch_size],
                                                                                  dtype=np.float32)).to(adapter.device))
                                        .argmax(1).cpu() for i in range(0, n, ctx.batch_size)]).numpy()
            agree = int((thief_pred == victim_pred).sum())
            lo, hi = wilson_interval(agree, n)
            group = f"{queries} queries"
            metrics.append(Metric(name="extraction_fidelity", group=group, value=agree / n, ci_low=lo, ci_high=hi,
                                  ci_level=0.95, n=n, higher_is_better=False,
                                  method=f"share of {n} evaluation inputs where the thief stolen with {queries} queries "
                                         "predicts the model's class; Wilson 95% interval"))
            acc = None
            if y_true is not None:
                correct = int((thief_pred == y_true).sum())
                acc = correct / n
                a_lo, a_hi = wilson_interval(correct, n)
                metrics.append(Metric(name="thief_accuracy", group=group, value=acc, ci_low=a_lo, ci_high=a_hi,
                                      ci_level=0.95, n=n, higher_is_better=None,
                                      method=f"accuracy of the thief stolen with {queries} queries; Wilson 95% interval"))
            rows.append([budget, queries, round(agree / n, 4), round(lo, 4), round(hi, 4),
                         None if acc is None else round(acc, 4)])
        # headline: the largest budget
        last = [m for m in metrics if m.group == f"{used[-1]} queries"]
        metrics[:0] = [m.model_copy(update={"group": None, "method": m.method + " (largest budget)"}) for m in last]
        victim_acc = None
        if y_true is not None:
            victim_acc = float((victim_pred == y_true).mean())
            metrics.append(Metric(name="victim_accuracy", value=victim_acc, n=n, higher_is_better=True,
                                  method=f"the model's own accuracy on the same {n} evaluation inputs"))
        series = {"fidelity (agreement with the model)": [r[2] for r in rows]}
        if y_true is not None:
            series["thief accuracy"] = [r[5] for r in rows]
            series["model accuracy"] = [round(victim_acc, 4)] * len(rows)
        evidence = [
            Table(title="Model extraction (ART CopycatCNN) per query budget",
                  columns=["budget", "queries used", "fidelity", "CI low", "CI high", "thief accuracy"], rows=rows,
                  caption=f"Thief: {description}. Query pool: {pool_name} ({len(pool)} inputs)."),
            Figure(kind="line", title="Extraction fidelity against query budget",
                   data={"x": used, "series": series, "xlabel": "victim queries", "ylabel": "share of evaluation inputs"},
                   caption="High fidelity at a small budget means the model is cheap to copy through its answers."),
        ]
        fid = metrics[0].value
        limitations = ["Fidelity is a lower bound on what an attacker achieves: a longer-trained or better-tuned "
                       "thief (epochs, lr) usually copies more.",
                       "The attacker is given in-distribution query data; an attacker with only out-of-distribution "
                       "data usually needs more queries.",
                       "Only predicted labels are used (no probabilities): a stronger attacker could learn from scores."]
        if max(cfg.budgets) > len(pool):
            limitations.append(f"Budgets above the query pool size ({len(pool)}) were capped to it.")
        return CheckOutput(
            summary=(f"A thief trained on {used[-1]} black-box queries agrees with the model on {fid:.1%} of {n} "
                     "evaluation inputs" + (f" (thief accuracy {metrics[1].value:.3f}, model {victim_acc:.3f})."
                                            if y_true is not None else ".")),
            metrics=metrics, evidence=evidence, dataset="eval", n_samples=n, limitations=limitations,
            method=(f"ART CopycatCNN: for each budget, that many inputs are drawn (seeded) from {pool_name}, labelled "
                    f"with the model's predicted class, and a fresh thief ({description}) is trained on them for "
                    f"{cfg.epochs} epochs (Adam, lr {cfg.lr:g}, batch {cfg.train_batch_size}). Fidelity and accuracy are "
                    "measured on evaluation inputs the attacker never queried."))
