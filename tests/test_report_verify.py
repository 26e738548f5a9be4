"""`deepaudit report` and `deepaudit diff` re-render only a results.json that is consistent with itself
(audit.results.load_results): an edited verdict, a newer major schema or a metric that is not a number is
refused with one line and exit 2, before anything is written."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from audit.results import AuditResult, summarise
from tests.reports.conftest import build_result

runner = CliRunner()


def failing() -> dict:
    """A genuine failing audit: build_result without its errored check (fairness misses a 'fail' threshold)."""
    result = build_result()
    checks = [c for c in result.checks if c.status != "error"]
    result = result.model_copy(update={"checks": checks, "summary": summarise(checks)})
    assert (result.summary.status, result.summary.exit_code) == ("fail", 1)
    return json.loads(result.to_json())


def resummarised(data: dict) -> dict:
    """The summary recomputed from the (edited) checks, so that only the check-level rule can object."""
    checks = AuditResult.model_validate(data).checks
    return {**data, "summary": json.loads(summarise(checks).model_dump_json())}


def report(tmp_path: Path, data: dict) -> tuple[int, str, Path]:
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))  # a fresh folder per call
    src = tmp_path / "h.json"
    src.write_text(json.dumps(data))
    out = tmp_path / "rr"
    res = runner.invoke(cli.app, ["report", str(src), "--out", str(out), "--format", "md"])
    return res.exit_code, res.stderr, out


def refused(tmp_path: Path, data: dict, *words: str) -> None:
    code, stderr, out = report(tmp_path, data)
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert all(w in stderr for w in words), stderr
    assert not out.exists(), "nothing written"


def test_a_genuine_results_file_rerenders(tmp_path: Path) -> None:
    code, stderr, out = report(tmp_path, failing())
    assert code == 0, stderr
    assert "deepaudit: FAIL" in (out / "summary.md").read_text()


def test_the_reviewers_tampered_file_is_refused(tmp_path: Path) -> None:
    """Summary and the failing check's status edited to 'pass' (its threshold still says passed: false)."""
    data = failing()
    data["summary"].update(status="pass", exit_code=0)
    data["checks"][1]["status"] = "pass"
    refused(tmp_path, data, "inconsistent", "may have been edited")


def test_a_summary_lie_is_refused(tmp_path: Path) -> None:
    data = failing()
    data["summary"].update(status="pass", exit_code=0)
    refused(tmp_path, data, "summary", "may have been edited")


@pytest.mark.parametrize(("index", "status", "why"), [
    (1, "warn", "missed a 'fail' threshold"),      # fairness missed its 'fail' threshold
    (2, "pass", "missed a threshold"),             # robustness missed a 'warn' threshold
    (3, "pass", "no threshold was judged"),        # ood: no thresholds at all
    (0, "measured", "a threshold was judged"),     # performance met a judged threshold
])
def test_a_check_status_lie_is_refused(tmp_path: Path, index: int, status: str, why: str) -> None:
    data = failing()
    data["checks"][index]["status"] = status
    refused(tmp_path, resummarised(data), why, "may have been edited")


def test_a_newer_major_schema_is_refused(tmp_path: Path) -> None:
    data = failing()
    data["schema_version"] = "99.0"
    refused(tmp_path, data, "newer deepaudit", "upgrade")
    data["schema_version"] = "2.7"  # a newer minor only adds optional fields: still read
    assert report(tmp_path, data)[0] == 0


@pytest.mark.parametrize("value", ["NaN", "0.9", True])
def test_a_metric_that_is_not_a_number_is_refused(tmp_path: Path, value: object) -> None:
    data = failing()
    data["checks"][0]["metrics"][0]["value"] = value
    refused(tmp_path, data, "'accuracy'", "not a number or null")


def test_diff_uses_the_same_loader(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(failing()))
    data = failing()
    data["summary"].update(status="pass", exit_code=0)
    bad.write_text(json.dumps(data))
    assert runner.invoke(cli.app, ["diff", str(good), str(good)]).exit_code == 0
    res = runner.invoke(cli.app, ["diff", str(good), str(bad)])
    assert res.exit_code == 2 and "may have been edited" in res.stderr


def schema_1(data: dict) -> dict:
    """As written by 1.x: no judged / not_judged / on_not_judged, no 'measured' in the counts."""
    data = {**data, "schema_version": "1.2", "summary": dict(data["summary"])}
    for key in ("judged", "not_judged", "on_not_judged"):
        data["summary"].pop(key)
    data["summary"]["counts"] = {k: v for k, v in data["summary"]["counts"].items() if k != "measured"}
    return data


def test_a_schema_1_file_rerenders_and_its_lies_are_refused(tmp_path: Path) -> None:
    assert report(tmp_path, schema_1(json.loads(build_result().to_json())))[0] == 0
    lie = schema_1(failing())
    lie["summary"].update(status="pass", exit_code=0)
    refused(tmp_path, lie, "its checks give 'fail'")
    counts = schema_1(failing())
    counts["summary"]["counts"]["pass"] += 1
    refused(tmp_path, counts, "counts")
    only_summary = schema_1(json.loads(build_result().to_json()))
    only_summary["checks"] = [c for c in only_summary["checks"] if c["status"] not in ("error", "fail")]
    only_summary["summary"].update(status="fail", exit_code=1,
                                   counts={"pass": 1, "warn": 1, "skipped": 1})
    refused(tmp_path, only_summary, "no check is")
