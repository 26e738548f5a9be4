"""PDF export, model card, diff and the `deepaudit report --format` / `deepaudit diff` commands."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import cli
from audit.results import AuditResult, CheckResult, Metric, ThresholdOutcome, summarise
from reports import ReportError, render_card_html, render_card_markdown, render_pdf, write_reports
from reports.diff import diff_results, render_diff_table

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
runner = CliRunner()


def invoke(*args: object) -> tuple[int, str, str]:
    res = runner.invoke(cli.app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


# ----------------------------------------------------------------------------------------- PDF


@needs_chromium
def test_render_pdf_writes_a_pdf_atomically(tmp_path: Path, html_report: str) -> None:
    html = tmp_path / "report.html"
    html.write_text(html_report, encoding="utf-8")
    out = render_pdf(html, tmp_path / "sub" / "report.pdf")
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 10_000
    assert (out.stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.pdf"]  # no temp file left


@needs_chromium
def test_pdf_page_one_has_verdict_risks_attestations_and_every_check(tmp_path: Path,
                                                                      audit_result: AuditResult) -> None:
    """Issue 4: page one of the PDF answers 'fit to ship?' — even with as many checks as the demo runs."""
    from pypdf import PdfReader

    checks = list(audit_result.checks)
    while len(checks) < 16:  # as many checks as a full audit, each with the originals' thresholds
        c = audit_result.checks[len(checks) % len(audit_result.checks)]
        checks.append(c.model_copy(update={"id": f"{c.id}.copy{len(checks)}", "title": f"{c.title} {len(checks)}"}))
    result = audit_result.model_copy(update={"checks": checks, "summary": summarise(checks)})
    written = write_reports(result, tmp_path, pdf=True)
    page_one = PdfReader(str(written["pdf"])).pages[0].extract_text()
    for text in ("Verdict and overview", "Top risks", "Not evidenced by the tool", "Every check", checks[-1].title):
        assert text in page_one, text


@needs_chromium
def test_report_format_pdf_writes_the_pdf_not_the_page_it_was_printed_from(tmp_path: Path,
                                                                           audit_result: AuditResult) -> None:
    results = tmp_path / "results.json"
    results.write_text(audit_result.to_json())
    code, out, err = invoke("report", results, "-o", tmp_path / "o", "--format", "pdf")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["report.pdf", "results.json"]
    assert (tmp_path / "o" / "report.pdf").read_bytes().startswith(b"%PDF-") and "html:" not in out
    code, _, err = invoke("report", results, "-o", tmp_path / "both", "--format", "pdf", "--format", "html")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["report.html", "report.pdf", "results.json"]


def test_missing_chromium_is_a_clear_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 audit_result: AuditResult) -> None:
    monkeypatch.setenv("DEEPAUDIT_CHROMIUM", str(tmp_path / "no-such-browser"))
    html = tmp_path / "r.html"
    html.write_text("<p>x</p>")
    with pytest.raises(ReportError, match=r"apt-get install chromium.*DEEPAUDIT_CHROMIUM") as raised:
        render_pdf(html, tmp_path / "r.pdf")
    assert "--no-pdf" not in str(raised.value), "the library names no option: that depends on the command"
    assert not (tmp_path / "r.pdf").exists()
    results = tmp_path / "results.json"
    results.write_text(audit_result.to_json())
    code, _, err = invoke("report", results, "-o", tmp_path / "o", "--format", "pdf")
    assert code == 2 and "apt-get install chromium" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ the card


MITCHELL = ["Model details", "Intended use", "Factors", "Metrics", "Evaluation data", "Training data",
            "Quantitative analyses", "Ethical considerations", "Caveats and recommendations", "Environmental impact"]


def _front_matter(md: str) -> dict:
    assert md.startswith("---\n")
    return yaml.safe_load(md.split("---\n")[1])


def test_card_has_every_section_and_no_invented_co2(audit_result: AuditResult) -> None:
    md = render_card_markdown(audit_result)
    for title in MITCHELL:
        assert f"\n## {title}\n" in md, title
    meta = _front_matter(md)
    assert "co2_eq_emissions" not in meta
    assert "Training emissions: not measured" in md
    assert "Sorting pet photos \\<script\\>" in md  # the attestation, escaped
    assert "<script>" not in md.split("---\n", 2)[2]
    page = render_card_html(audit_result)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert all(f">{title}</h2>" in page for title in MITCHELL)


def test_card_co2_metadata_only_from_an_energy_check(audit_result: AuditResult) -> None:
    energy = CheckResult(id="efficiency", category="energy", title="Efficiency", status="pass", summary="s",
                         metrics=[Metric(name="training_co2_kg", value=1.5, n=1, method="stated 300 W x 10 h",
                                         provenance="estimated", unit="kg")])
    checks = [*audit_result.checks, energy]
    result = audit_result.model_copy(update={"checks": checks, "summary": summarise(checks)})
    meta = _front_matter(render_card_markdown(result))
    assert meta["co2_eq_emissions"]["emissions"] == 1500.0
    assert "estimated" in meta["co2_eq_emissions"]["source"]


def test_write_reports_writes_the_card(tmp_path: Path, audit_result: AuditResult) -> None:
    written = write_reports(audit_result, tmp_path, html=False, card=True)
    assert {"json", "card", "card_html"} == set(written)
    assert (tmp_path / "model_card.md").read_text().startswith("---\n")


# ---------------------------------------------------------------------------------------- diff


def _result(audit_result: AuditResult, acc: float, thr_min: float = 0.9, status: str = "pass",
            extra: bool = True) -> AuditResult:
    perf = CheckResult(
        id="performance", category="performance", title="Performance", status=status, summary="s",
        metrics=[Metric(name="accuracy", value=acc, n=100, method="m", higher_is_better=True),
                 Metric(name="ece", value=0.05, n=100, method="m", higher_is_better=False),
                 Metric(name="n", value=3.0, n=100, method="m")],
        thresholds=[ThresholdOutcome(metric="accuracy", min=thr_min, observed=acc, passed=acc >= thr_min,
                                     source="config")])
    other = CheckResult(id="ood", category="ood", title="OOD", status="measured", summary="s")  # no threshold: never a pass
    checks = [perf, other] if extra else [perf]
    return audit_result.model_copy(update={"checks": checks, "summary": summarise(checks)})


def test_diff_finds_each_kind_of_regression(audit_result: AuditResult) -> None:
    base = _result(audit_result, 0.95)
    assert diff_results(base, _result(audit_result, 0.945)).regressions == []  # within tolerance
    assert diff_results(base, _result(audit_result, 0.99)).regressions == []  # better
    kinds = {(r.check, r.kind) for r in diff_results(base, _result(audit_result, 0.93, status="fail", extra=False)).regressions}
    assert kinds == {("performance", "metric"), ("performance", "status"), ("ood", "check_missing")}
    changed = diff_results(base, _result(audit_result, 0.95, thr_min=0.8))
    assert [(r.kind, r.item, r.base, r.new) for r in changed.regressions] == [("threshold", "accuracy", "min 0.9 (fail)", "min 0.8 (fail)")]
    assert "threshold changed" in render_diff_table(changed)
    with pytest.raises(ValueError, match="'tolerance' parameter"):
        diff_results(base, base, tolerance=-1)


def test_diff_cli_exit_codes(tmp_path: Path, audit_result: AuditResult) -> None:
    base, new, same = tmp_path / "base.json", tmp_path / "new.json", tmp_path / "same.json"
    base.write_text(_result(audit_result, 0.95).to_json())
    same.write_text(_result(audit_result, 0.95).to_json())
    new.write_text(_result(audit_result, 0.95, thr_min=0.8).to_json())
    code, out, _ = invoke("diff", base, same)
    assert code == 0 and "No regressions." in out
    code, out, _ = invoke("diff", base, new)
    assert code == 1 and "accuracy" in out and "threshold changed" in out
    code, out, _ = invoke("diff", base, new, "--tolerance", "0.5")
    assert code == 1  # a changed threshold is a regression whatever the tolerance
    (tmp_path / "bad.json").write_text("{not json")
    code, _, err = invoke("diff", base, tmp_path / "bad.json")
    assert code == 2 and "not a deepaudit results.json" in err
    code, _, err = invoke("diff", base, tmp_path / "missing.json")
    assert code == 2 and "does not exist" in err


def test_report_formats(tmp_path: Path, audit_result: AuditResult) -> None:
    results = tmp_path / "results.json"
    results.write_text(audit_result.to_json())
    code, out, _ = invoke("report", results, "-o", tmp_path / "o", "--format", "md", "--format", "junit",
                          "--format", "card")
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["junit.xml", "model_card.html", "model_card.md",
                                                                  "results.json", "summary.md"]
    code, _, err = invoke("report", results, "--format", "docx")
    assert code == 2 and "--format must be" in err


# ------------------------------------------------------------------------------ CI workflow doc


def test_documented_workflow_is_valid_and_matches_the_readme() -> None:
    import re

    import typer

    root = Path(__file__).resolve().parents[2]
    workflow = yaml.safe_load((root / "docs" / "github-actions.yml").read_text())
    runs = [step["run"] for step in workflow["jobs"]["audit"]["steps"] if "run" in step]
    audit_cmd = next(r for r in runs if r.startswith("deepaudit audit"))
    assert "--set data.eval.max_samples=" in audit_cmd and "--out audit-out" in audit_cmd
    assert any(r.startswith("deepaudit diff ") for r in runs)
    command = typer.main.get_command(cli.app)
    known = {o for p in command.commands["audit"].params for o in (*p.opts, *p.secondary_opts)}
    assert set(re.findall(r"--[a-z-]+", audit_cmd)) <= known
    # The robustness gate runs a selection of known checks, with flags the CLI has.
    from audit.registry import list_checks

    gate = next(r for step in workflow["jobs"]["robustness"]["steps"] if (r := step.get("run", "")).startswith(
        "deepaudit audit"))
    assert set(re.findall(r"--[a-z-]+", gate)) <= known
    selected = re.search(r"--checks (\S+)", gate).group(1).split(",")
    assert selected == ["adversarial", "corruption"] and set(selected) <= set(list_checks())
    readme = (root / "README.md").read_text()
    assert "docs/github-actions.yml" in readme
    assert "deepaudit audit --config deepaudit.yaml --quiet --out audit-out" in readme
