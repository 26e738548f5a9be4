"""Every capped check reports the rows it used, not the size of the data set: its ``n_samples`` (the "rows
used" column of the report's sample-budget table) and every metric's ``n``. One audit through the real
runner on an evaluation set larger than every cap; one test per check (issue 14: Neural Cleanse reported
the whole evaluation set)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from tiny_models import TINY_CNN_CLASS, band_cnn, band_images

from audit.config import load_config
from audit.runner import run_audit

pytestmark = pytest.mark.usefixtures("one_thread")

N_EVAL, N_REF, N_OOD = 80, 80, 20

#: Each capped check's caps, all below the set sizes.
CAPS = [
    "energy.track=false", "checks.performance.n_resamples=20",
    "select=[corruption, adversarial, explanations, ood, privacy, poisoning.backdoor_simulation, "
    "poisoning.backdoor_scan, privacy.extraction, efficiency]",
    "checks.corruption={max_samples: 20, severities: [1], n_resamples: 20}",
    "checks.adversarial={max_samples: 16, eps: [0.1], steps: 3, black_box: never}",
    "checks.explanations={max_samples: 3, n_steps: 4, n_background: 4, n_shap_samples: 4, n_kernel_samples: 16, "
    "n_lime_samples: 16, curve_steps: 4, n_perturb: 2}",
    "checks.ood={max_samples: 30, max_fit_samples: 20, n_synthetic: 10, n_resamples: 20}",
    "checks.privacy={max_samples: 25, n_resamples: 20}",
    "checks.poisoning.backdoor_simulation={rates: [0.1], epochs: 1, max_samples: 20, max_train_samples: 40}",
    "checks.poisoning.backdoor_scan={max_samples: 24, steps: 10, max_train_samples: 40}",
    "checks.privacy.extraction={budgets: [20], epochs: 1, max_samples: 20}",
    "checks.efficiency={batch_size: 8, min_seconds: 0, n_repeats: 3, n_warmup: 0, measure_energy: false}",
]

#: check -> (rows used, the largest metric ``n`` allowed). OOD metrics count the 30 in-distribution rows and
#: the 20 OOD rows; privacy uses 25 members and 25 non-members; the backdoor simulation trains on 40 reference
#: rows and measures on 20 evaluation rows; the scan optimises triggers on 24 evaluation rows and the ART
#: defences examine 40 reference rows; efficiency times one batch of 8 rows (its latency metrics count batches).
EXPECTED = {
    "corruption": (20, 20),
    "adversarial": (16, 16),
    "explanations": (3, 3),
    "ood": (30, 30 + N_OOD),
    "privacy": (50, 50),
    "poisoning.backdoor_simulation": (60, 20),
    "poisoning.backdoor_scan": (64, 40),
    "privacy.extraction": (20, 20),
    "efficiency": (8, 24),
}


@pytest.fixture(scope="module")
def capped_audit(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from safetensors.torch import save_file

    tmp = tmp_path_factory.mktemp("rows-used")
    model = band_cnn(n_classes=5)
    weights = tmp / "cnn.safetensors"
    save_file(model.state_dict(), str(weights))
    for name, n, seed in (("eval", N_EVAL, 2), ("reference", N_REF, 3), ("ood", N_OOD, 4)):
        xs, ys = band_images(n, n_classes=5, size=8, seed=seed)
        np.savez(tmp / f"{name}.npz", x=xs, y=ys)
    cfg = load_config(None, {
        "model.path": str(weights), "model.class": TINY_CNN_CLASS, "model.init_args": {"n_classes": 5},
        "model.preprocessing.input_range": [0.0, 1.0], "device": "cpu", "batch_size": 32,
        "data.eval.path": str(tmp / "eval.npz"), "data.reference.path": str(tmp / "reference.npz"),
        "data.ood.path": str(tmp / "ood.npz"), "data.ood.target": None, "output.dir": str(tmp / "out"),
    }, CAPS)
    return run_audit(cfg)


@pytest.mark.parametrize("check_id", list(EXPECTED))
def test_a_capped_check_reports_the_rows_it_used_not_the_whole_set(capped_audit, check_id: str) -> None:  # noqa: ANN001
    rows, largest_n = EXPECTED[check_id]
    r = capped_audit.check(check_id)
    assert r.status not in ("error", "skipped"), (r.status, r.error, r.skip_reason)
    assert r.sample_budget, "the check records its caps"
    assert r.n_samples == rows, f"{check_id} reports {r.n_samples} rows used; it used {rows} (eval has {N_EVAL})"
    too_big = [(m.name, m.group, m.n) for m in r.metrics if m.n > largest_n]
    assert not too_big, f"{check_id}: metrics whose n is more than the {largest_n} rows used: {too_big[:5]}"


def test_neural_cleanse_metrics_count_the_rows_it_optimised_on(capped_audit) -> None:  # noqa: ANN001
    """Not the 5 classes and not the 80-row evaluation set: the 24 rows, and the 40 reference rows the ART
    defences examined for flagged_samples."""
    r = capped_audit.check("poisoning.backdoor_scan")
    ns = {m.name: m.n for m in r.metrics}
    assert ns == {"anomaly_index": 24, "class_anomaly_index": 24, "suspected_classes": 24, "trigger_mask_l1": 24,
                  "flagged_samples": 40}


def test_the_reports_sample_budget_table_shows_the_rows_used(capped_audit) -> None:  # noqa: ANN001
    from reports.html import render_html

    html = render_html(capped_audit)
    table = html[html.index("Sample budget of each check"):]
    table = table[:table.index("</table>")]
    for check_id, (rows, _) in EXPECTED.items():
        row = re.search(rf"<td>{re.escape(check_id)}</td>.*?<td class=\"num\">([^<]*)</td>", table, re.S)
        assert row is not None, check_id
        assert row.group(1).replace(",", "") == str(rows), (check_id, row.group(1))


def test_text_checks_report_the_rows_they_used(tmp_path) -> None:  # noqa: ANN001
    """Identity-term swaps take at most max_samples texts per pair of groups (here he/she both ways: at most
    10 rows, not the 40 of the set); attention rollout and the character-edit attack read their caps."""
    from tiny_text import gendered_text_audit_data

    cfg = load_config(None, gendered_text_audit_data(tmp_path),
                      ["energy.track=false", "select=[adversarial, explanations.attention, fairness.counterfactual_text]",
                       # words of the tiny BERT's vocabulary: its 'he'/'she' are both [UNK] (swaps left out)
                       "checks.fairness.counterfactual_text={max_samples: 5, min_texts: 2, n_resamples: 20, "
                       "terms: {x: {a: [good, great], b: [bad, awful]}}}",
                       "checks.explanations.attention={max_samples: 2, curve_steps: 4}",
                       "checks.adversarial={max_samples: 8, text_recipes: [char_edit]}"])
    result = run_audit(cfg)
    cf = result.check("fairness.counterfactual_text")
    assert cf.status not in ("error", "skipped"), (cf.error, cf.skip_reason)
    pairs = [m for m in cf.metrics if m.name == "counterfactual_flip_rate" and m.group]
    assert pairs and all(m.n <= 5 for m in pairs)
    assert 0 < cf.n_samples <= 5 * len(pairs) < 40, cf.n_samples
    for check_id, rows in (("explanations.attention", 2), ("adversarial", 8)):
        r = result.check(check_id)
        assert r.status not in ("error", "skipped"), (check_id, r.error, r.skip_reason)
        assert r.n_samples == rows and all(m.n <= rows for m in r.metrics), (check_id, r.n_samples)
