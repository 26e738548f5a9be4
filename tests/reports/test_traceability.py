"""Traceability mapping (reports/data/traceability.yaml), attestations and the control block in the report."""

from __future__ import annotations

import re

import pytest
import yaml

from audit.config import ATTESTATION_TOPICS, validate_config
from audit.errors import ConfigError
from audit.results import AuditResult, CheckResult
from reports import render_html
from reports.attestations import KNOWN_TOPICS, attestation_rows, open_attestations
from reports.traceability import load_mapping, parse_mapping, requirements_for, trace_rows, unmapped_checks

EU = ["Art. 9(6)", "Art. 9(8)", "Art. 10(2)(f)", "Art. 10(2)(g)", "Art. 13(3)(b)(ii)", "Art. 13(3)(b)(iv)",
      "Art. 13(3)(b)(v)", "Art. 15(1)", "Art. 15(3)", "Art. 15(4)", "Art. 15(5)", "Annex IV 2(g)", "Annex IV 3"]
NIST = ["2.1", "2.3", "2.5", "2.6", "2.7", "2.9", "2.10", "2.11", "2.12"]


def _check(check_id: str, category: str, status: str = "pass") -> CheckResult:
    return CheckResult(id=check_id, category=category, title=check_id, status=status, summary="s")


def test_mapping_names_every_required_provision_and_its_text_version() -> None:
    mapping = load_mapping()
    ids = set(mapping.requirements)
    assert {f"EU AI Act {p}" for p in EU} | {f"NIST AI RMF MEASURE {n}" for n in NIST} == ids
    assert "2024/1689" in mapping.sources["eu_ai_act"]["title"]
    assert "12.7.2024" in mapping.sources["eu_ai_act"]["version"]
    assert "January 2023" in mapping.sources["nist_ai_rmf"]["version"]
    assert all(r.text for r in mapping.requirements.values())


@pytest.mark.parametrize("check_id, category, expected", [
    ("performance", "performance", "EU AI Act Art. 15(3)"),
    ("fairness.group_metrics", "fairness", "EU AI Act Art. 10(2)(f)"),
    ("fairness.counterfactual_text", "fairness", "NIST AI RMF MEASURE 2.11"),
    ("fairness.some_future_check", "fairness", "EU AI Act Art. 13(3)(b)(v)"),  # inherited from its category
    ("privacy", "privacy", "NIST AI RMF MEASURE 2.10"),
    ("poisoning.backdoor", "poisoning", "EU AI Act Art. 15(5)"),
    ("efficiency", "energy", "NIST AI RMF MEASURE 2.12"),
])
def test_checks_map_by_id_or_category(check_id: str, category: str, expected: str) -> None:
    ids = [r.id for r in requirements_for(_check(check_id, category))]
    assert expected in ids
    assert "EU AI Act Art. 9(8)" in ids  # every mapped check is tested against prior-defined thresholds


def test_every_registered_check_is_mapped() -> None:
    from audit.registry import get_check, list_checks
    for check_id in list_checks():
        assert requirements_for(_check(check_id, get_check(check_id).category)), check_id


def test_unknown_check_is_reported_unmapped(audit_result: AuditResult) -> None:
    odd = _check("custom.thing", "custom")
    result = audit_result.model_copy(update={"checks": [*audit_result.checks, odd]})
    assert [c.id for c in unmapped_checks(result)] == ["custom.thing"]
    assert "Not mapped to any requirement: <span class=\"mono\">custom.thing</span>" in render_html(result)


def test_parse_mapping_rejects_undefined_requirements() -> None:
    from importlib import resources
    data = yaml.safe_load(resources.files("reports").joinpath("data/traceability.yaml").read_text())
    data["checks"]["performance"] = ["EU AI Act Art. 99"]
    with pytest.raises(ValueError, match="undefined requirement"):
        parse_mapping(data)


def test_trace_rows_take_the_worst_status_of_the_applicable_checks() -> None:
    from tests.reports.conftest import build_result
    result = build_result().model_copy(update={"checks": [_check("performance", "performance", "pass"),
                                                          _check("robustness.x", "robustness", "fail")]})
    rows = {r.requirement.id: r for r in trace_rows(result)}
    assert rows["EU AI Act Art. 15(1)"].status == "fail"
    assert rows["EU AI Act Art. 15(3)"].status == "pass"
    assert rows["NIST AI RMF MEASURE 2.12"].status == "not tested"


def _trace(checks: list[CheckResult], not_judged: list | None = None) -> dict:  # noqa: ANN001
    from audit.results import NotJudged
    from tests.reports.conftest import build_result
    result = build_result()
    blocked = [NotJudged(check=c, metric="m", min=0.5, level="fail", source="config", reason="r", blocking=True)
               for c in not_judged or []]
    result = result.model_copy(update={"checks": checks, "summary": result.summary.model_copy(
        update={"not_judged": blocked})})
    return {r.requirement.id: r for r in trace_rows(result)}


ALL = "EU AI Act Art. 9(6)"  # every mapped check evidences it (all_checks)
#: Ids of 12 mapped checks, so a requirement in all_checks has 12 checks.
TWELVE = ["performance", "fairness.group_metrics", "fairness.counterfactual_text", "adversarial", "corruption",
          "drift", "efficiency", "explanations", "ood", "privacy", "privacy.extraction", "poisoning.backdoor_scan"]


def test_a_requirement_passes_when_its_applicable_checks_passed_and_lists_the_skipped_ones() -> None:
    checks = [_check(c, "x", "skipped" if c in ("drift", "fairness.counterfactual_text") else "pass") for c in TWELVE]
    row = _trace(checks)[ALL]
    assert len(row.checks) == 12 and row.status == "pass"  # 10 passed, 2 skipped: the SKIPPED was wrong
    assert [c.id for c in row.skipped] == ["fairness.counterfactual_text", "drift"]
    html = render_html(build_with(checks))
    table = html[html.index('<section id="traceability"'):]
    row_html = table[table.index(f"{ALL}</th>"):]
    row_html = row_html[:row_html.index("</tr>")]
    # The checks cell groups the checks by status (each once); the status cell counts the skipped ones.
    assert re.search(r"SKIPPED: .*?fairness.counterfactual_text.*?drift.*?badge-pass.*?\(2 skipped\)", row_html, re.S)
    assert re.search(r"PASS: .*?performance", row_html, re.S)


def build_with(checks: list[CheckResult]) -> AuditResult:
    from audit.results import summarise
    from tests.reports.conftest import build_result
    return build_result().model_copy(update={"checks": checks, "summary": summarise(checks)})


@pytest.mark.parametrize("statuses, expected", [
    (["skipped", "skipped"], "skipped"),                 # nothing applied
    (["pass", "measured", "skipped"], "measured"),       # a measured check is evidence, not a pass
    (["pass", "warn", "measured"], "warn"),
    (["pass", "fail", "warn", "skipped"], "fail"),
    (["fail", "error", "pass"], "error"),
    (["pass"], "pass"),
])
def test_trace_status_precedence(statuses: list[str], expected: str) -> None:
    checks = [_check(c, "x", s) for c, s in zip(TWELVE, statuses)]
    assert _trace(checks)[ALL].status == expected


def test_a_blocking_unjudged_threshold_makes_its_requirement_not_judged_even_when_the_check_was_skipped() -> None:
    checks = [_check("performance", "performance", "pass"), _check("drift", "shift", "skipped"),
              _check("adversarial", "robustness", "warn")]
    assert _trace(checks, not_judged=["drift"])[ALL].status == "not_judged"     # above warn, pass and skipped
    assert _trace(checks, not_judged=["drift"])["EU AI Act Art. 15(4)"].status == "not_judged"
    assert _trace(checks + [_check("ood", "ood", "fail")], not_judged=["drift"])[ALL].status == "fail"
    assert _trace(checks)[ALL].status == "warn"


def test_report_has_traceability_right_after_page_one_and_per_check(html_report: str) -> None:
    overview_end = html_report.index('<section id="traceability"')
    assert html_report.index('id="overview"') < overview_end < html_report.index('class="check"')
    table = html_report[overview_end:html_report.index("</section>", overview_end)]
    assert "EU AI Act Art. 15(3)</th>" in table and "NIST AI RMF MEASURE 2.12</th>" in table
    assert "NOT TESTED" in table and "12.7.2024" in table
    section = html_report[html_report.index('id="check-1-performance"'):]
    assert re.search(r"Requirements evidenced:.*EU AI Act Art\. 15\(3\)", section[:section.index("</section>")], re.S)


def test_attestation_rows_count_missing_and_open(audit_result: AuditResult) -> None:
    result = audit_result.model_copy(update={"attestations": {
        "intended_purpose": {"statement": "Sort photos", "owner": "Ann", "date": "2026-01-02", "status": "approved"},
        "logging": {"statement": "TBD", "status": "open"},
        "extra_topic": {"statement": "More", "status": "stated"},
    }})
    rows = {r.key: r for r in attestation_rows(result)}
    assert list(rows)[:5] == list(KNOWN_TOPICS) == list(ATTESTATION_TOPICS)
    assert rows["extra_topic"].status == "stated"
    assert sorted(r.key for r in open_attestations(result)) == ["data_governance", "human_oversight", "logging",
                                                                 "post_market_monitoring"]
    page = render_html(result)
    one = page[:page.index('<section id="traceability"')]
    assert "4 open or missing attestations" in one
    assert "Logging — <strong>OPEN</strong>" in one and "Human oversight measures — <strong>MISSING</strong>" in one
    assert "Attestations (human statements, not evidenced by the tool)" in page
    assert "<td>Ann</td><td>2026-01-02</td>" in page


BASE = {"model": {"path": "m.pt"}, "data": {"eval": {"path": "d.npz"}}}


@pytest.mark.parametrize("attestations, message", [
    ({"logging": {"statement": "x", "status": "done"}}, "attestations.logging.status': input should be 'stated'"),
    ({"logging": {"owner": "A"}}, "missing required key 'attestations.logging.statement'"),
    ({"logging": {"statement": "x", "signed": True}}, "unknown key 'attestations.logging.signed'"),
])
def test_attestation_config_errors_name_the_key(attestations: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config({**BASE, "attestations": attestations}, "c.yaml")


def test_attestation_yaml_date_is_kept_as_text() -> None:
    cfg = validate_config(yaml.safe_load("""
model: {path: m.pt}
data: {eval: {path: d.npz}}
attestations:
  intended_purpose: {statement: Sort photos, owner: Ann, date: 2026-01-02, status: approved}
  my_topic: {statement: anything}
report: {signatories: [{role: Model owner, name: Ann}, {role: Compliance officer}]}
"""), "c.yaml")
    assert cfg.attestations["intended_purpose"].date == "2026-01-02"
    assert cfg.attestations["my_topic"].status == "stated"
    assert [s.name for s in cfg.report.signatories] == ["Ann", ""]


def test_control_block_prints_signature_lines(audit_result: AuditResult) -> None:
    prov = audit_result.provenance
    config = {**prov.config, "report": {"signatories": [{"role": "Model owner", "name": "Ann <b>"},
                                                        {"role": "Compliance officer", "name": ""}]}}
    result = audit_result.model_copy(update={"provenance": prov.model_copy(update={"config": config})})
    page = render_html(result)
    block = page[page.index('<section id="control"'):]
    block = block[:block.index("</section>")]
    assert "Annex IV 2(g)" in block and prov.config_sha256 in block and prov.report_id in block
    assert "<th scope=\"row\">Model owner</th><td>Ann &lt;b&gt;</td>" in block
    assert block.count('class="sign-line"') == 4
    assert all(f.sha256 in block for f in prov.files)
