"""A hand-built AuditResult covering every status and figure kind, with hostile user strings."""

from __future__ import annotations

import pytest

from audit.results import (
    AuditResult,
    CheckResult,
    FileRecord,
    Figure,
    Metric,
    Provenance,
    Table,
    ThresholdOutcome,
    summarise,
)

SCRIPT = "<script>alert(1)</script>"


def _metric(name: str, value: float | None, n: int = 500, group: str | None = None, **kw: object) -> Metric:
    ci = {} if value is None else {"ci_low": value - 0.02, "ci_high": value + 0.02, "ci_level": 0.95}
    return Metric(name=name, value=value, n=n, method="percentile bootstrap, 200 resamples", group=group,
                  **{**ci, **kw})


def build_result() -> AuditResult:
    """Five checks (pass, fail, warn, error, skipped) and one figure of every kind, plus a broken one."""
    performance = CheckResult(
        id="performance", category="performance", title="Predictive performance", status="pass",
        summary="Accuracy 0.912 on 500 samples.", dataset="eval", n_samples=500,
        metrics=[_metric("accuracy", 0.912), _metric("ece", 0.031, higher_is_better=False),
                 _metric("recall", 0.88, n=40, group="cat"), _metric("recall", None, n=0, group="dog")],
        thresholds=[ThresholdOutcome(metric="accuracy", min=0.9, observed=0.912, passed=True, source="config")],
        evidence=[
            Figure(kind="confusion_matrix", title="Confusion matrix",
                   data={"labels": ["cat", "dog", "bird"], "matrix": [[30, 5, 5], [2, 0, 0], [1, 2, 455]]},
                   caption="Rows are the true class."),
            Figure(kind="reliability_diagram", title="Reliability diagram",
                   data={"bin_edges": [0.0, 0.25, 0.5, 0.75, 1.0], "accuracy": [None, 0.4, 0.7, 0.95],
                         "confidence": [None, 0.38, 0.62, 0.93], "count": [0, 20, 80, 400]}),
            Table(title="Per-class recall", columns=["class", "support", "recall"],
                  rows=[["cat", 40, 0.88], ["dog", 0, None], ["bird | <b>", 458, 0.9934]],
                  caption="Classes with no support have no recall."),
        ],
        method="Argmax of logits; scikit-learn metrics.", limitations=["Measured on the evaluation set only."],
        config={"n_bins": 4, "n_resamples": 200}, duration_s=1.25,
    )
    fairness = CheckResult(
        id="fairness.group_gaps", category="fairness", title="Group gaps", status="fail",
        summary=f"TPR gap 0.21 between groups | {SCRIPT}", dataset="eval", n_samples=500,
        metrics=[_metric("tpr_gap", 0.21), _metric("tpr", 0.9, n=300, group="a"), _metric("tpr", 0.69, n=200, group="b")],
        thresholds=[ThresholdOutcome(metric="tpr_gap", max=0.1, observed=0.21, passed=False, source="config"),
                    ThresholdOutcome(metric="tpr", min=0.5, observed=0.69, passed=True, source="default")],
        evidence=[Figure(kind="bar", title="TPR by group",
                         data={"labels": ["a", "b"], "values": [0.9, 0.69], "ci_low": [0.86, 0.62],
                               "ci_high": [0.93, 0.75], "xlabel": "group", "ylabel": "TPR"}),
                  Figure(kind="scatter", title="Accuracy against disparity",
                         data={"x": [0.21, 0.05, 0.12], "y": [0.91, 0.88, 0.9],
                               "labels": ["original model", "threshold_optimizer", f"reweighing {SCRIPT}"],
                               "xlabel": "TPR gap", "ylabel": "accuracy"}),
                  Figure(kind="text_highlights", title="Token highlights",
                         data={"rows": [{"label": f"row 3 · lime · predicted cat {SCRIPT}",
                                         "words": ["great", "movie", SCRIPT, '"><b>x</b>'],
                                         "scores": [0.888, -0.25, 0.01, None]}],
                               "score": "attribution to the predicted class", "signed": True})],
        method="fairlearn MetricFrame.", limitations=["Groups under 30 samples get wide intervals."],
        duration_s=0.5,
    )
    robustness = CheckResult(
        id="robustness.pgd", category="robustness", title="PGD robustness", status="warn",
        summary="Robust accuracy 0.41 at eps 8/255.", dataset="eval", n_samples=100,
        metrics=[_metric("robust_accuracy", 0.41, n=100),
                 _metric("energy", 12.5, n=100, unit="J", provenance="estimated")],
        thresholds=[ThresholdOutcome(metric="robust_accuracy", min=0.5, level="warn", observed=0.41, passed=False,
                                     source="config")],
        evidence=[
            Figure(kind="line", title="Accuracy against eps",
                   data={"x": [0.0, 0.01, 0.03], "series": {"pgd": [0.91, 0.6, 0.41], "fgsm": [0.91, 0.7, None]},
                         "xlabel": "eps", "ylabel": "accuracy"}),
            Figure(kind="image_grid", title="Adversarial examples",
                   data={"images": [[[0.0, 1.0], [1.0, 0.0]], [[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]],
                                                                 [[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]]],
                         "titles": ["clean", "adversarial"]}),
            Figure(kind="bar", title="Broken figure", data={"labels": ["x"], "values": [SCRIPT]}),
        ],
        duration_s=3.0,
    )
    explain = CheckResult(
        id="explain.shap", category="explanations", title="SHAP explanations", status="error",
        summary="The check crashed.", error="RuntimeError: CUDA out of memory <oops>", duration_s=0.1,
    )
    ood = CheckResult(
        id="ood.energy", category="ood", title="OOD detection", status="skipped",
        summary="No OOD data set was given.", skip_reason="no data.ood in the config",
    )
    checks = [performance, fairness, robustness, explain, ood]
    provenance = Provenance(
        report_id="r-0001", tool_version="0.1.0", started_at="2024-05-01T10:00:00Z",
        finished_at="2024-05-01T10:01:00Z", seed=0, device="cpu", hardware={"cpu": "test cpu", "ram": "16 GiB"},
        python="3.11.7", platform="Linux-x86_64", libraries={"torch": "2.4.0", "numpy": "1.26.4"},
        files=[FileRecord(role="model", path=f"models/{SCRIPT}/net.pt", sha256="ab" * 32, format="torchscript"),
               FileRecord(role="data.eval", path="data/eval.npz", sha256="cd" * 32, format="npz", n_samples=500)],
        config={"model": {"path": "models/net.pt"}, "checks": {"performance": {"n_bins": 4}}},
        config_sha256="ef" * 32, model={"kind": "torchscript", "classes": ["cat", "dog", "bird"], "parameters": 1234},
    )
    return AuditResult(provenance=provenance, checks=checks, summary=summarise(checks),
                       attestations={"intended_purpose": f"Sorting pet photos {SCRIPT}",
                                     "human_oversight": {"reviewer": "QA team", "frequency": "weekly"}})


@pytest.fixture(scope="session")
def audit_result() -> AuditResult:
    """The full result: every status, every figure kind, one undrawable figure."""
    return build_result()


@pytest.fixture(scope="session")
def failing_result(audit_result: AuditResult) -> AuditResult:
    """The same audit without the errored check, so the overall status is 'fail'."""
    checks = [c for c in audit_result.checks if c.status != "error"]
    return audit_result.model_copy(update={"checks": checks, "summary": summarise(checks)})


@pytest.fixture(scope="session")
def html_report(audit_result: AuditResult) -> str:
    """The full result rendered once (figures make rendering the slow part)."""
    from reports import render_html

    return render_html(audit_result)
