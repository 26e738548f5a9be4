"""Verdicts through the real CLI: a near-chance model fails by default, a perfect one passes, per-group
thresholds are judged on their worst group, what was not judged blocks the gate unless the user opts out,
and a check that was only measured never reads PASS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import BandClassifier, band_images
from typer.testing import CliRunner

import cli
from audit.registry import list_checks

runner = CliRunner()


def only(*check_ids: str) -> list[str]:
    """--set flags that turn off every check but these (each audit stays a few seconds)."""
    flags = []
    for cid in list_checks():
        if cid not in check_ids:
            flags += ["--set", f"checks.{cid}.enabled=false"]
    return flags


def audit(model: Path, data: Path, out: Path, *extra: str, quiet: bool = True) -> tuple[int, str, str, dict]:
    args = ["audit", "--model", str(model), "--data", str(data), "--out", str(out), "--device", "cpu",
            "--set", "energy.track=false", "--set", "checks.performance.n_resamples=20",
            "--markdown", str(out / "summary.md"), "--junit", str(out / "junit.xml"), *extra]
    # a wide terminal, so that table cells are not wrapped across lines
    result = runner.invoke(cli.app, [*args, "--quiet"] if quiet else args, env={"COLUMNS": "400"})
    data_out = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    return result.exit_code, result.stdout, result.stderr, data_out


def _check(data: dict, cid: str) -> dict:
    return next(c for c in data["checks"] if c["id"] == cid)


@pytest.fixture
def band_model(tmp_path: Path) -> Path:
    path = tmp_path / "band.pt"
    torch.jit.save(torch.jit.script(BandClassifier()), str(path))
    return path


@pytest.fixture
def band_npz(tmp_path: Path) -> Path:
    x, y = band_images(90)
    path = tmp_path / "band.npz"
    np.savez(path, x=x, y=y)
    return path


def test_near_chance_model_fails_performance_by_default(tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    """An untrained CNN on random labels, flags only: the built-in baseline condition fails it (exit 1), and
    --quiet still says why on stderr."""
    code, stdout, stderr, data = audit(torchscript_file, image_npz, tmp_path / "out", *only("performance"))
    assert code == 1, stderr
    perf = _check(data, "performance")
    assert perf["status"] == "fail"
    outcome = next(t for t in perf["thresholds"] if t["metric"] == "informative_p_value")
    assert (outcome["source"], outcome["max"], outcome["passed"]) == ("default", 0.01, False)
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert lines == [f"deepaudit: FAIL performance: informative_p_value {outcome['observed']:.4f} > required 0.0100 "
                     "(built-in default)", "deepaudit: FAIL — the only check missed a threshold"]


def test_perfect_classifier_passes_with_a_per_group_threshold(tmp_path: Path, band_model: Path, band_npz: Path) -> None:
    """Issue 12: `precision.min=0` on a perfect classifier was a FAIL; now it is judged on the worst class."""
    code, _, stderr, data = audit(band_model, band_npz, tmp_path / "out", *only("performance"),
                                  "--set", "checks.performance.thresholds.precision.min=0")
    assert code == 0, stderr
    perf = _check(data, "performance")
    assert perf["status"] == "pass" and data["summary"]["status"] == "pass" and data["summary"]["judged"] == ["performance"]
    precision = next(t for t in perf["thresholds"] if t["metric"] == "precision")
    assert (precision["passed"], precision["observed"], precision["group"]) == (True, 1.0, "0")
    baseline = next(t for t in perf["thresholds"] if t["metric"] == "informative_p_value")
    assert baseline["passed"] and baseline["source"] == "default" and baseline["observed"] < 1e-20


def test_per_group_threshold_fails_on_the_worst_group(tmp_path: Path, band_model: Path) -> None:
    x, y = band_images(90)
    y[np.flatnonzero(y == 2)[:6]] = 0  # six class-0 labels on class-2 images: recall of class 0 suffers
    data_path = tmp_path / "noisy.npz"
    np.savez(data_path, x=x, y=y)
    code, stdout, stderr, data = audit(band_model, data_path, tmp_path / "out", *only("performance"),
                                       "--set", "checks.performance.thresholds.recall.min=0.95", quiet=False)
    assert code == 1, stderr
    recall = next(t for t in _check(data, "performance")["thresholds"] if t["metric"] == "recall")
    assert (recall["group"], recall["passed"]) == ("0", False)
    assert recall["observed"] == pytest.approx(30 / 36)
    assert "worst of 3 groups (lowest value): 0" in recall["detail"]
    expected = "recall [worst group: 0] 0.8333 < required 0.9500 (config)"
    assert f"deepaudit: FAIL performance: {expected}" in stderr
    assert expected in " ".join(stdout.split())  # the terminal table says what was required
    assert "recall [worst group: 0]" in (tmp_path / "out" / "report.html").read_text()


def test_configured_threshold_that_cannot_be_judged_blocks_unless_on_not_judged_warn(
        tmp_path: Path, band_model: Path, band_npz: Path) -> None:
    """drift needs data.reference: skipped. A fail threshold the user set on it was never judged."""
    flags = [*only("performance", "drift"), "--set", "checks.drift.thresholds.max_psi.max=0.2"]
    code, _, stderr, data = audit(band_model, band_npz, tmp_path / "a", *flags)
    assert code == 1
    summary = data["summary"]
    assert summary["status"] == "not_judged" and _check(data, "drift")["status"] == "skipped"
    assert [(u["check"], u["metric"], u["blocking"]) for u in summary["not_judged"]] == [("drift", "max_psi", True)]
    assert stderr.strip().startswith("deepaudit: NOT JUDGED drift: max_psi required ≤ 0.2000 (fail level, config): "
                                     "not judged — the check was skipped: ")
    html = (tmp_path / "a" / "report.html").read_text().split('id="traceability"')[0]
    assert "BLOCKS THE GATE" in html and "NOT JUDGED" in html
    code, _, stderr, data = audit(band_model, band_npz, tmp_path / "b", *flags, "--set", "on_not_judged=warn")
    assert code == 0 and stderr == ""
    assert data["summary"]["status"] == "warn" and data["summary"]["not_judged"][0]["blocking"] is False
    # a threshold on a check that is disabled is not judged either
    code, _, stderr, data = audit(band_model, band_npz, tmp_path / "c", *only("performance"),
                                  "--set", "checks.drift={enabled: false, thresholds: {max_psi: {max: 0.2}}}")
    assert code == 1 and data["summary"]["status"] == "not_judged"
    assert "NOT JUDGED drift: max_psi required ≤ 0.2000 (fail level, config): not judged — the check is disabled" in stderr


def test_nothing_judged_exits_1_and_measured_never_reads_pass(tmp_path: Path, band_model: Path, band_npz: Path) -> None:
    flags = [*only("efficiency"), "--set", "checks.efficiency={min_seconds: 0, measure_energy: false}"]
    code, _, stderr, data = audit(band_model, band_npz, tmp_path / "a", *flags)
    assert code == 1
    assert _check(data, "efficiency")["status"] == "measured"
    assert (data["summary"]["status"], data["summary"]["judged"]) == ("not_judged", [])
    assert "deepaudit: NOT JUDGED: nothing was judged" in stderr
    assert stderr.count("nothing was judged") == 1, stderr  # the verdict is that line: not printed twice
    for out in (tmp_path / "a",):
        page_one = (out / "report.html").read_text().split('id="traceability"')[0]
        assert 'class="badge badge-pass"' not in page_one and 'class="badge badge-measured"' in page_one
        assert "PASS**" not in (out / "summary.md").read_text()
        assert 'message="measured, not judged' in (out / "junit.xml").read_text()
    code, stdout, stderr, data = audit(band_model, band_npz, tmp_path / "b", *flags, "--set", "on_not_judged=warn",
                                       quiet=False)
    assert code == 0 and data["summary"]["status"] == "measured"
    assert "MEASURED" in stdout and "PASS" not in stdout and "not judged: no threshold applies" in " ".join(stdout.split())
