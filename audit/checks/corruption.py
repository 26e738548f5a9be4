"""Corruption robustness: accuracy and calibration under common input corruptions at 5 severities.

Images: Gaussian and shot noise, blur, brightness, contrast, JPEG, pixelation (CIFAR-10-C
constants). Tabular: Gaussian noise and missing values (mean-imputed). Text: typos and case
changes (``audit.corruptions``). The same seeded subset of the evaluation set is corrupted for
every corruption and severity, so the results are paired.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field, field_validator

from audit import corruptions as C
from audit.checks.performance import expected_calibration_error
from audit.config import CheckConfig, ThresholdSpec, check_names
from audit.context import AuditContext
from audit.errors import InputError, SkipCheck
from audit.registry import Check, CheckOutput, register_check
from audit.results import Figure, Metric, Table
from audit.stats import bootstrap_index_chunks, percentile_interval, wilson_interval


class CorruptionConfig(CheckConfig):
    """Settings of the ``corruption`` check."""

    renamed: ClassVar[dict[str, str]] = {"n_samples": "max_samples"}

    corruptions: list[str] | None = Field(
        default=None, description="Corruptions to apply (default: all for the input kind). Images: "
        + ", ".join(C.IMAGE_CORRUPTIONS) + "; tabular: " + ", ".join(C.TABULAR_CORRUPTIONS)
        + "; text: " + ", ".join(C.TEXT_CORRUPTIONS) + ".")
    severities: list[Annotated[int, Field(ge=1, le=5)]] = Field(
        default=[1, 2, 3, 4, 5], min_length=1, description="Severities, 1 (mild) to 5 (severe).")
    max_samples: int = Field(default=500, ge=10, description="Seeded subset of the evaluation set that is corrupted (was n_samples).")
    n_resamples: int = Field(default=500, ge=0, description="Bootstrap resamples for the interval on mean corruption error.")
    n_bins: int = Field(default=15, ge=2, le=100, description="Bins of the ECE under each corruption.")

    @field_validator("corruptions")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        return check_names(v, C.all_corruptions(), "corruption")


@register_check("corruption")
class CorruptionRobustness(Check):
    """Accuracy under corruptions; mean corruption error (mCE, unnormalised: mean error over
    corruptions and severities) and relative mCE (mean increase in error over clean).

    References
    ----------
    Hendrycks & Dietterich, ICLR 2019.
    """

    category = "robustness"
    title = "Robustness to common corruptions"
    needs = ("labels",)
    input_kinds = ("image", "tabular", "text")
    Config = CorruptionConfig
    metric_names = ("clean_accuracy", "mce", "relative_mce", "worst_accuracy", "accuracy", "ece")
    #: Built-in condition (warn): corruptions raise the error by more than 20 points on average over the clean error.
    default_thresholds = {"relative_mce": ThresholdSpec(max=0.2, level="warn")}

    def preflight(self, ctx: AuditContext) -> None:
        cfg: CorruptionConfig = self.config  # type: ignore[assignment]
        kind = ctx.adapter.input_kind
        available = C.corruptions_for(kind)
        unknown = [n for n in cfg.corruptions or [] if n not in available]
        if unknown and available:  # names of another input kind: the config is wrong for this model
            raise InputError(f"key 'checks.corruption.corruptions': {', '.join(unknown)} do not apply to {kind} inputs; "
                             f"choose from {', '.join(available)}.")

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: CorruptionConfig = self.config  # type: ignore[assignment]
        adapter, ev = ctx.adapter, ctx.dataset("eval")
        y_all = ctx.y_true()
        kind = adapter.input_kind
        available = C.corruptions_for(kind)
        if not available:
            raise SkipCheck(f"no built-in corruptions for {kind} inputs (images, tabular and text are covered).")
        self.preflight(ctx)
        names = cfg.corruptions or available
        rng = ctx.rng(self.id)
        n = len(ev)
        rows_idx = np.sort(rng.choice(n, cfg.max_samples, replace=False)) if n > cfg.max_samples else np.arange(n)
        inputs = [ev.inputs[i] for i in rows_idx] if isinstance(ev.inputs, list) else ev.inputs[rows_idx]
        y = y_all[rows_idx]
        m = len(rows_idx)
        clean_correct = ctx.y_pred()[rows_idx] == y
        clean_acc = float(clean_correct.mean())

        correct_rows, labels, metrics, table = [], [], [], []
        advance = ctx.progress(f"corruptions ({len(names)} x {len(cfg.severities)} on {m} samples)",
                               len(names) * len(cfg.severities))
        done = 0
        for name in names:
            for s in cfg.severities:
                shifted = C.apply(kind, inputs, name, s, rng, adapter.input_range)
                logits = adapter.predict_logits(shifted, batch_size=ctx.batch_size)
                probs = logits.double().softmax(dim=1).numpy()
                correct = probs.argmax(1) == y
                acc = float(correct.mean())
                lo, hi = wilson_interval(int(correct.sum()), m)
                ece = expected_calibration_error(probs, y, cfg.n_bins)
                group = f"{name}/{s}"
                metrics.append(Metric(name="accuracy", group=group, value=acc, ci_low=lo, ci_high=hi, ci_level=0.95,
                                      n=m, higher_is_better=True,
                                      method=f"accuracy on {m} samples corrupted by {name} at severity {s}; Wilson 95% interval"))
                metrics.append(Metric(name="ece", group=group, value=ece, n=m, higher_is_better=False,
                                      method=f"expected calibration error, {cfg.n_bins} bins, under {name} severity {s}"))
                correct_rows.append(correct)
                labels.append(group)
                table.append([name, s, round(acc, 4), round(lo, 4), round(hi, 4), round(acc - clean_acc, 4), round(ece, 4)])
                done += 1
                advance(done)

        errors = 1.0 - np.array(correct_rows, dtype=np.float64)  # (shifts, m)
        mce = float(errors.mean())
        rel = float((errors - (1.0 - clean_correct)).mean())
        reps_mce, reps_rel = [], []
        for idx in bootstrap_index_chunks(m, cfg.n_resamples, rng):
            e = errors[:, idx]  # (shifts, b, m)
            reps_mce.append(e.mean(axis=(0, 2)))
            reps_rel.append((e - (1.0 - clean_correct[idx])[None]).mean(axis=(0, 2)))
        ci = f"paired percentile bootstrap over the {m} samples ({cfg.n_resamples} resamples)"
        lo_m, hi_m = percentile_interval(np.concatenate(reps_mce)) if reps_mce else (None, None)
        lo_r, hi_r = percentile_interval(np.concatenate(reps_rel)) if reps_rel else (None, None)
        worst_i = int(np.argmax(errors.mean(axis=1)))
        c_lo, c_hi = wilson_interval(int(clean_correct.sum()), m)
        level = 0.95 if cfg.n_resamples else None
        metrics[:0] = [
            Metric(name="clean_accuracy", value=clean_acc, ci_low=c_lo, ci_high=c_hi, ci_level=0.95, n=m,
                   higher_is_better=True, method=f"accuracy on the same {m} uncorrupted samples; Wilson 95% interval"),
            Metric(name="mce", value=mce, ci_low=lo_m, ci_high=hi_m, ci_level=level, n=m, higher_is_better=False,
                   method=f"mean error over {len(names)} corruptions x {len(cfg.severities)} severities "
                          f"(unnormalised, not AlexNet-relative); {ci}"),
            Metric(name="relative_mce", value=rel, ci_low=lo_r, ci_high=hi_r, ci_level=level, n=m, higher_is_better=False,
                   method=f"mean increase in error over the clean error, same shifts; {ci}"),
            Metric(name="worst_accuracy", value=float(1 - errors[worst_i].mean()), n=m, higher_is_better=True,
                   method=f"lowest accuracy over all corruptions and severities ({labels[worst_i]})"),
        ]
        series = {name: [t[2] for t in table if t[0] == name] for name in names}
        evidence = [
            Figure(kind="line", title="Accuracy against corruption severity",
                   data={"x": list(cfg.severities), "series": {**series, "clean": [clean_acc] * len(cfg.severities)},
                         "xlabel": "severity", "ylabel": "accuracy"},
                   caption=f"Accuracy on the same {m} evaluation samples under each corruption; 'clean' is the uncorrupted baseline."),
            Table(title="Accuracy and calibration per corruption and severity",
                  columns=["corruption", "severity", "accuracy", "CI low", "CI high", "change vs clean", "ECE"], rows=table),
        ]
        summary = (f"Mean corruption error {mce:.3f} (clean error {1 - clean_acc:.3f}) over {len(names)} corruptions x "
                   f"{len(cfg.severities)} severities on {m} samples; worst: {labels[worst_i]} "
                   f"(accuracy {1 - errors[worst_i].mean():.3f}).")
        return CheckOutput(
            summary=summary, metrics=metrics, evidence=evidence, dataset="eval", n_samples=m,
            method=(f"A seeded subset of {m} evaluation samples is corrupted with each of {', '.join(names)} at severities "
                    f"{cfg.severities}; predictions are the argmax of the model's logits on the corrupted inputs."),
            limitations=["Synthetic corruptions approximate, but are not, the shifts of a real deployment.",
                         "Image brightness is shifted on every channel (CIFAR-10-C shifts HSV value)."
                         if kind == "image" else "Severity scales are deepaudit's own for non-image data."],
        )
