"""What the terminal, the CI log and the Markdown summary say about a missed threshold, and progress in a
log (not a TTY), through the real CLI entry point (CliRunner's streams are not terminals)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_cli import audit_flags, invoke, load

pytestmark = pytest.mark.usefixtures("one_thread")

#: A fail-level miss (an untrained model is far from 99% accurate) and a warn-level one (ECE is never 0).
MISSES = ["--checks", "performance,efficiency", "--set", "checks.performance.thresholds.accuracy.min=0.99",
          "--set", "checks.performance.thresholds.ece={max: 0.0, level: warn}"]


def _run(tmp_path: Path, model: Path, data: Path, *extra: str, quiet: bool = True) -> tuple[int, str, str, dict]:
    flags = audit_flags(model, data, tmp_path / "out", *MISSES, *extra)
    if not quiet:
        flags.remove("--quiet")
    code, stdout, stderr = invoke(*flags)
    return code, stdout, stderr, load(tmp_path / "out")


def _expected(data: dict) -> tuple[str, str]:
    perf = next(c for c in data["checks"] if c["id"] == "performance")
    acc = next(t["observed"] for t in perf["thresholds"] if t["metric"] == "accuracy")
    ece = next(t["observed"] for t in perf["thresholds"] if t["metric"] == "ece")
    return f"accuracy {acc:.4f} < required 0.9900 (config)", f"ece {ece:.4f} > required 0.0000 (config)"


def test_quiet_exit_1_prints_only_the_missed_fail_thresholds_and_the_verdict(tmp_path: Path, torchscript_file: Path,
                                                                             image_npz: Path) -> None:
    code, stdout, stderr, data = _run(tmp_path, torchscript_file, image_npz)
    assert code == 1
    acc, _ = _expected(data)
    assert stdout == ""
    assert stderr.splitlines() == [f"deepaudit: FAIL performance: {acc}",
                                   "deepaudit: FAIL — 1 of 2 checks missed a threshold (1 measured, not judged)"]


def test_the_table_shows_every_missed_threshold_with_its_level_and_a_log_gets_a_line_per_check(
        tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    code, stdout, stderr, data = _run(tmp_path, torchscript_file, image_npz, quiet=False)
    assert code == 1
    acc, ece = _expected(data)
    table = stdout[:stdout.index("missed thresholds:")]
    assert "│ performance │ FAIL" in table and "FAIL accuracy" in table and "WARN ece" in table
    # after the table (whose cells wrap), every missed threshold whole on one line, warn-level ones too
    assert stdout[stdout.index("missed thresholds:"):].splitlines()[:3] == [
        "missed thresholds:", f"  FAIL performance: {acc}", f"  WARN performance: {ece}"]
    # In a log: one line as each check starts, one as it ends with its elapsed time and status; no bars.
    progress = [line for line in stderr.splitlines() if line.startswith("[")]
    assert [re.sub(r"done in \d+\.\d s", "done in T s", line) for line in progress] == [
        "[1/2] performance …", "[1/2] performance … done in T s (FAIL)",
        "[2/2] efficiency …", "[2/2] efficiency … done in T s (MEASURED)"]
    assert not re.search("[━━╸]", stderr)
    assert stderr.splitlines()[-2:] == [f"deepaudit: FAIL performance: {acc}",
                                        "deepaudit: FAIL — 1 of 2 checks missed a threshold (1 measured, not judged)"]


def test_markdown_names_metric_observed_bound_and_level_of_every_miss(tmp_path: Path, torchscript_file: Path,
                                                                       image_npz: Path) -> None:
    code, _, _, data = _run(tmp_path, torchscript_file, image_npz, "--markdown", str(tmp_path / "s.md"))
    assert code == 1
    perf = next(c for c in data["checks"] if c["id"] == "performance")
    acc = next(t["observed"] for t in perf["thresholds"] if t["metric"] == "accuracy")
    ece = next(t["observed"] for t in perf["thresholds"] if t["metric"] == "ece")
    md = (tmp_path / "s.md").read_text()
    missed = md[md.index("### Missed thresholds"):].splitlines()
    assert f"- **FAIL** performance: accuracy = {acc:.4f}, required ≥ 0.9900 (fail level, config): missed" in missed
    assert f"- **WARN** performance: ece = {ece:.4f}, required ≤ 0.0000 (warn level, config): missed" in missed
    assert f"accuracy ≥ 0.9900 (config): {acc:.4f} **missed** (fail)" in md
    assert f"ece ≤ 0.0000 (config): {ece:.4f} **missed** (warn)" in md


def test_a_log_gets_whole_metric_names_in_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    """Not a TTY (as in CI): the table is up to 160 columns wide and folds, never cuts, a long name."""
    import cli
    from audit.results import CheckResult, ThresholdOutcome, summarise
    from tests.reports.conftest import build_result

    long = "demographic_parity_difference"
    thresholds = [ThresholdOutcome(metric=m, max=0.1, level="warn", observed=0.3, passed=False, source="default",
                                   group="sex") for m in (long, "demographic_parity_ratio")]
    check = CheckResult(id="fairness.group_metrics", category="fairness", title="Group fairness", status="warn",
                        summary="Selection rates differ between groups " * 4, thresholds=thresholds)
    base = build_result()
    result = base.model_copy(update={"checks": [check], "summary": summarise([check])})
    cli._print_summary(result, {}, quiet=False)
    table = capsys.readouterr().out.split("missed thresholds:")[0]
    assert "…" not in table and max(map(len, table.splitlines())) <= 160
    assert long in table and "demographic_parity_ratio" in table


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_turns_off_hugging_face_progress_bars(quiet: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers draws "Loading weights: 100%|...|" on stderr for every model it loads (the text attacks'
    sentence encoder among them); --quiet turns that off, for workers too (the environment)."""
    import os

    from transformers.utils import logging as hf_logging

    import cli

    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # restored (to unset, usually) after the test
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
    hf_logging.enable_progress_bar()
    try:
        cli._Progress(quiet)
        assert hf_logging.is_progress_bar_enabled() is not quiet
        assert ("HF_HUB_DISABLE_PROGRESS_BARS" in os.environ) is quiet
    finally:
        hf_logging.enable_progress_bar()
