"""The model probe: what the runner checks about the model itself before any check runs.

1. **Output shape.** The evaluation logits are computed once, batch by batch, into the
   :class:`~audit.context.AuditContext` cache every check reads (so the probe adds no forward pass
   over the evaluation set). A batch whose output width differs from the first batch's, or whose
   output is not one row per input, is bad input: exit 2 (``ModelAdapter._batched``).
2. **Non-finite logits.** A row with a NaN or infinite logit makes every metric on it meaningless
   (argmax of NaN is class 0; "ECE nan" passed). Such rows are bad input — exit 2 naming how many
   and which — unless ``model.allow_nonfinite`` is set, in which case they are excluded from every
   check and the results say so.
3. **Determinism.** One seeded batch of evaluation rows is run twice more, with torch's generator
   seeded before each call (with ``seed`` and ``seed + 1``, so the measurement repeats exactly from
   run to run while random layers draw fresh noise), and compared with each other and with the
   cached logits of the same rows (computed in other batches, which also exposes outputs that depend
   on the batch, e.g. batch norm left in training mode). Non-determinism is a finding, not an exit:
   a non-deterministic model's every number is suspect, and the audit's status is at least ``warn``.

Reference and OOD logits are checked for non-finite values when a check first computes them
(``AuditContext.logits``); the probe does not add a forward pass over those sets.
"""

from __future__ import annotations

import numpy as np
import torch

from audit.context import AuditContext
from audit.errors import InputError
from audit.results import ProbeResult
from models.errors import ModelInputError

#: Rows of the repeated batch (at most; fewer when the evaluation set or the batch size is smaller).
PROBE_ROWS = 64
#: Logit differences up to ``ATOL + RTOL * max|logit|`` are float noise (kernel choice, batch size), not randomness.
ATOL, RTOL = 1e-5, 1e-4
#: Row indices named in messages and kept in the results.
MAX_LISTED = 10


def nonfinite_rows(logits: torch.Tensor) -> np.ndarray:
    """Indices of the rows with any NaN or infinite logit."""
    return np.flatnonzero(~torch.isfinite(logits).all(dim=1).numpy())


def _file_rows(ctx: AuditContext, rows: np.ndarray) -> list[int]:
    """Row numbers in the data file (``max_samples`` keeps a subset: map back through its indices)."""
    kept = ctx.dataset("eval").indices
    return [int(kept[r]) if kept is not None else int(r) for r in rows]


def probe_model(ctx: AuditContext, *, allow_nonfinite: bool = False) -> ProbeResult:
    """Probe the model of ``ctx`` on its evaluation set; fill the context's logits cache.

    Parameters
    ----------
    ctx : AuditContext
        The context the checks will read; with ``allow_nonfinite`` its evaluation set loses the rows
        with non-finite logits.
    allow_nonfinite : bool
        Exclude rows with non-finite logits instead of refusing the model.

    Returns
    -------
    ProbeResult

    Raises
    ------
    InputError
        Output width that changes between batches, an output that is not one row per input, or
        non-finite logits (unless ``allow_nonfinite``; and always when every row is non-finite).
    """
    try:
        logits = ctx.logits("eval")
    except ModelInputError as exc:
        raise InputError(f"data.eval: {exc}") from None
    n = len(logits)
    bad = nonfinite_rows(logits)
    listed = _file_rows(ctx, bad[:MAX_LISTED])
    more = ", …" if len(bad) > MAX_LISTED else ""
    if len(bad):
        where = (f"{len(bad)} of {n} rows of data.eval give non-finite (NaN or infinite) logits "
                 f"(rows {', '.join(map(str, listed))}{more})")
        if len(bad) == n:
            raise InputError(f"{where}: every row; the model cannot be audited on this data.")
        if not allow_nonfinite:
            raise InputError(f"{where}. Fix the model or its inputs, or set model.allow_nonfinite: true to exclude "
                             "those rows from every check.")
        ctx.exclude_rows("eval", np.setdiff1d(np.arange(n), bad), logits)
    disagreement, max_diff, n_repeat = _repeat(ctx)
    tol = ATOL + RTOL * float(ctx.logits("eval").abs().max())
    deterministic = max_diff <= tol
    training = ctx.adapter.training_mode()
    findings = []
    if not deterministic:
        findings.append(
            f"The model is not deterministic: {disagreement:.1%} of {n_repeat} predictions changed between identical "
            f"calls (largest logit change {max_diff:.3g}" + (", non-finite on a repeated call" if not np.isfinite(max_diff) else "")
            + "); a non-deterministic model's every number is suspect"
            + (" (a torch module is in training mode)." if training else
               " (e.g. dropout or a random layer baked into an export made in training mode)."))
    if len(bad):
        findings.append(f"{len(bad)} of {n} evaluation rows with non-finite logits (rows {', '.join(map(str, listed))}"
                        f"{more}) were excluded from every check (model.allow_nonfinite).")
    return ProbeResult(
        n_rows=n, nonfinite_rows=int(len(bad)), nonfinite_indices=listed, excluded=bool(len(bad)),
        n_repeat=n_repeat, disagreement_rate=disagreement, max_abs_diff=max_diff if np.isfinite(max_diff) else None,
        tolerance=tol,
        deterministic=deterministic, training_mode=training, findings=findings,
        method=(f"Evaluation logits computed once in batches of {ctx.batch_size}, checked for a constant output width "
                f"and for NaN/inf; {n_repeat} seeded evaluation rows run twice more (torch seeded before each call) "
                "and compared with each other and with their logits from the full pass: disagreement is the share of "
                "rows whose predicted class is not the same in all three; differences up to "
                f"{ATOL:g} + {RTOL:g}·max|logit| count as float noise."),
    )


def _repeat(ctx: AuditContext) -> tuple[float, float, int]:
    """Disagreement rate and largest absolute logit difference over three evaluations of one seeded batch."""
    ds = ctx.dataset("eval")
    k = min(len(ds), PROBE_ROWS, ctx.batch_size)
    rows = np.sort(ctx.rng("probe").choice(len(ds), k, replace=False))
    inputs = [ds.inputs[i] for i in rows] if isinstance(ds.inputs, list) else ds.inputs[rows]
    outs = [ctx.logits("eval")[rows]]
    state = torch.random.get_rng_state()
    try:
        for offset in (0, 1):
            torch.manual_seed(ctx.seed + offset)
            with torch.no_grad():
                try:
                    outs.append(ctx.adapter.logits(ctx.adapter.to_batch(inputs)).detach().float().cpu())
                except ModelInputError as exc:
                    raise InputError(f"data.eval: {exc}") from None
    finally:
        torch.random.set_rng_state(state)  # the probe leaves the audit's random stream as it found it
    if any(o.shape != outs[0].shape for o in outs):
        raise InputError(f"the model's output shape changed between calls on the same {k} rows "
                         f"({', '.join(str(tuple(o.shape)) for o in outs)}); it must return (batch, classes).")
    preds = torch.stack([o.argmax(1) for o in outs])
    disagree = float((preds != preds[0]).any(0).float().mean())
    diffs = [float((a - b).abs().nan_to_num(nan=float("inf")).max()) for i, a in enumerate(outs) for b in outs[i + 1:]]
    return disagree, max(diffs), k  # inf: a repeated call gave non-finite logits where another did not
