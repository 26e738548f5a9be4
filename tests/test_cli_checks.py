"""Check selection (``--checks``, ``select``) and ``deepaudit checks``, through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.registry import NEEDS, describe_checks, get_check, list_checks
from tests.test_cli import audit_flags, invoke, load

pytestmark = pytest.mark.usefixtures("one_thread")


def test_checks_lists_every_check_with_what_it_needs_and_its_defaults() -> None:
    code, stdout, _ = invoke("checks")
    assert code == 0
    for check_id in list_checks():
        line = next(line for line in stdout.splitlines() if line.startswith(check_id + " "))
        assert get_check(check_id).title in line
    perf = next(line for line in stdout.splitlines() if line.startswith("performance "))
    assert "labels" in perf and "informative_p_value ≤ 0.01 (fail)" in perf and "baseline_lift ≥ 0.1 (warn)" in perf
    assert "nothing: measured, not judged" in next(line for line in stdout.splitlines() if line.startswith("efficiency "))
    drift = next(line for line in stdout.splitlines() if line.startswith("drift "))
    assert "reference" in drift and "tabular" in drift and "image" not in drift
    assert all(f"  {key} " in stdout for key in NEEDS)  # the legend


def test_checks_json_is_the_registry() -> None:
    code, stdout, _ = invoke("checks", "--json")
    assert code == 0
    rows = json.loads(stdout)
    assert rows == describe_checks() and [r["id"] for r in rows] == list_checks()
    for r in rows:
        cls = get_check(r["id"])
        assert {t["metric"]: (t["min"], t["max"], t["level"]) for t in r["default_thresholds"]} == {
            m: (t.min, t.max, t.level) for m, t in getattr(cls, "default_thresholds", {}).items()}
        assert list(r["needs"]) == list(cls.needs) and r["metrics"] == list(cls.metric_names)
    privacy = next(r for r in rows if r["id"] == "privacy")
    assert set(privacy["needs"]) == {"labels", "reference"}


def test_a_check_declaring_an_unknown_need_is_refused_at_registration() -> None:
    from audit.registry import Check, register_check

    class Odd(Check):
        title = "odd"
        category = "x"
        needs = ("telepathy",)

        def run(self, ctx):  # noqa: ANN001, ANN201
            raise NotImplementedError

    with pytest.raises(ValueError, match="unknown needs or input kinds \\['telepathy'\\]"):
        register_check("odd.check")(Odd)


@pytest.mark.parametrize("command", ["audit", "compare", "demo"])
def test_an_unknown_check_id_exits_2_with_a_suggestion_before_any_work(tmp_path: Path, command: str,
                                                                       torchscript_file: Path, image_npz: Path) -> None:
    out = tmp_path / "out"
    args = {"audit": audit_flags(torchscript_file, image_npz, out),
            "compare": ["compare", "--model", str(torchscript_file), "--data", str(image_npz), "--variant",
                        "pruned:0.5", "--out", str(out), "--quiet"],
            "demo": ["demo", "--out", str(out), "--cache", str(tmp_path / "cache"), "--quiet"]}[command]
    code, stdout, stderr = invoke(*args, "--checks", "performance,adversarail")
    assert code == 2, stderr
    assert stderr.strip().splitlines() == [
        "deepaudit: error: --checks: unknown check 'adversarail'. Did you mean 'adversarial'? Choose from "
        + ", ".join(list_checks()) + "; 'deepaudit checks' lists them."]
    assert not out.exists() and not (tmp_path / "cache").exists()  # nothing trained, nothing written


def test_an_unknown_id_in_the_config_selection_names_the_key(tmp_path: Path, torchscript_file: Path,
                                                              image_npz: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("select: [performance, drfit]\n")
    code, _, stderr = invoke(*audit_flags(torchscript_file, image_npz, tmp_path / "out"), "--config", cfg)
    assert code == 2
    assert f"{cfg}: key 'select': unknown check 'drfit'. Did you mean 'drift'?" in stderr
    code, _, stderr = invoke(*audit_flags(torchscript_file, image_npz, tmp_path / "out"), "--checks", " , ")
    assert code == 2 and "--checks: give at least one check" in stderr


def test_only_the_selected_checks_run_and_thresholds_on_the_others_are_reported_not_selected(
        tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    """A fail threshold on a check left out by --checks is listed as not judged (not selected), never blocks
    the gate and never warns: the user left the check out on purpose. A selected check runs even when the
    config disables it."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("checks:\n  ood: {thresholds: {worst_auroc: {min: 0.99}}}\n  drift: {enabled: false}\n")
    out = tmp_path / "out"
    code, _, stderr = invoke(*audit_flags(torchscript_file, image_npz, out, "--markdown", str(tmp_path / "s.md")),
                             "--config", cfg, "--checks", "performance, drift")
    assert code == 0, stderr
    data = load(out)
    assert [c["id"] for c in data["checks"]] == ["performance", "drift"]  # registry order; drift selected though disabled
    assert data["provenance"]["config"]["select"] == ["performance", "drift"]
    assert data["summary"]["status"] == "pass" and data["summary"]["not_judged"] == [{
        "check": "ood", "metric": "worst_auroc", "min": 0.99, "max": None, "level": "fail", "source": "config",
        "reason": "not selected (select / --checks: performance, drift)", "blocking": False, "deselected": True}]
    summary = (tmp_path / "s.md").read_text()
    assert "thresholds on 1 check not selected (--checks) were not judged: ood" in summary
    assert "ood: worst\\_auroc required ≥ 0.9900 (fail level, config): not judged — not selected" in summary
    # The same threshold on a check that is merely disabled (no selection) blocks the gate, as before.
    code, _, stderr = invoke(*audit_flags(torchscript_file, image_npz, tmp_path / "out2"), "--config", cfg,
                             "--set", "checks.ood.enabled=false", "--set", "checks.drift.enabled=true",
                             "--set", "select=[performance]")
    assert code == 0 and load(tmp_path / "out2")["summary"]["not_judged"][0]["deselected"] is True
    code, _, stderr = invoke(*audit_flags(torchscript_file, image_npz, tmp_path / "out3"), "--config", cfg,
                             "--set", "checks.ood.enabled=false", *[f"--set=checks.{c}.enabled=false" for c in
                                                                    list_checks() if c != "performance"])
    assert code == 1 and "NOT JUDGED ood: worst_auroc required ≥ 0.9900" in stderr


def test_compare_runs_only_the_selected_checks_on_every_model(tmp_path: Path, torchscript_file: Path,
                                                               image_npz: Path) -> None:
    out = tmp_path / "cmp"
    code, _, stderr = invoke("compare", "--model", torchscript_file, "--data", image_npz, "--with", torchscript_file,
                             "--out", out, "--device", "cpu", "--checks", "performance",
                             "--set", "energy.track=false", "--set", "checks.performance.n_resamples=20",
                             "--set", "checks.performance.thresholds={informative_p_value: {max: 1}}")
    assert code == 0, stderr
    entries = json.loads((out / "compare.json").read_text())["entries"]
    assert len(entries) == 2 and all([c["id"] for c in e["result"]["checks"]] == ["performance"] for e in entries)
    # In a log (not a TTY), a line as each check of each model starts and ends.
    lines = [line for line in stderr.splitlines() if line.startswith(("[", "  audited"))]
    assert [line.split(" done in ")[0].split(": ")[0] for line in lines] == [
        "[1/1] performance …", "[1/1] performance …", "  audited base",
        "[1/1] performance …", "[1/1] performance …", f"  audited {torchscript_file.stem}"]
    assert sum(" done in " in line for line in lines) == 2


def test_nothing_judged_because_the_selected_check_was_skipped_says_why(tmp_path: Path, torchscript_file: Path,
                                                                       image_npz: Path) -> None:
    """--checks fairness.group_metrics without --sensitive: exit 1, nothing judged, and the quiet lines name the
    skipped check and its fix (not only "no check had a threshold", which points at the wrong fix)."""
    code, _, stderr = invoke(*audit_flags(torchscript_file, image_npz, tmp_path / "out"),
                             "--checks", "fairness.group_metrics")
    assert code == 1 and "NOT JUDGED: nothing was judged" in stderr
    skipped = next(line for line in stderr.splitlines() if line.startswith("deepaudit: SKIPPED fairness.group_metrics: "))
    assert "--sensitive" in skipped and "Skipped: " not in skipped
