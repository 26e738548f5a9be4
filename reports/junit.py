"""JUnit XML for CI test tabs: one test case per check, and one for the model probe.

A missed fail-level threshold is a ``<failure>``, a crashed check an ``<error>``, a check that did
not apply ``<skipped>``; a warning passes, with the warning in ``<system-out>``. A check that was
measured but not judged (status ``measured``) is ``<skipped message="measured, not judged: ...">``, never
a passing test case, since nothing was asserted. A ``fail`` threshold set in the config that could
not be judged while it blocks the gate is a ``<failure type="not_judged">`` on its check, and an
audit blocked as not judged gets one more test case, ``deepaudit.gate``, failing with every reason.
Nothing that matters is hidden in ``<system-out>`` alone.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from audit.results import AuditResult, CheckResult, is_judged

from . import _format as fmt

#: Characters XML 1.0 cannot carry, even escaped; they are replaced by U+FFFD.
_INVALID_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MESSAGE_CHARS = 500


def _clean(text: object) -> str:
    return _INVALID_XML.sub("\ufffd", str(text))


def _message(text: str) -> str:
    """One-line attribute text, shortened; the element's text keeps the whole story."""
    line = " ".join(text.split())
    return line if len(line) <= _MESSAGE_CHARS else line[: _MESSAGE_CHARS - 1] + "…"


def _element(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    node = ET.SubElement(parent, tag, {k: _clean(v) for k, v in attrs.items()})
    if text is not None:
        node.text = _clean(text)
    return node


def _details(check: CheckResult) -> str:
    """Summary, thresholds and key metrics of a check, as plain text lines."""
    lines = [f"{fmt.status_word(check.status)}: {check.summary}"]
    lines += [f"threshold {fmt.describe_threshold(t)}" for t in check.thresholds]
    lines += [f"metric {fmt.fmt_metric(m)}" for m in fmt.key_metrics(check)]
    return "\n".join(lines)


def measured_message(check: CheckResult) -> str:
    return (f"measured, not judged: no threshold applies to its metrics (set checks.{check.id}.thresholds "
            "to judge them)")


def _add_testcase(suite: ET.Element, check: CheckResult, blocking: set[str]) -> str:
    """Add the check's test case; return its JUnit outcome (passed, failure, error, skipped)."""
    case = _element(suite, "testcase", classname=f"deepaudit.{check.category}", name=check.id,
                    time=f"{max(check.duration_s, 0.0):.3f}")
    details = _details(check)
    unjudged = [t for t in check.thresholds if not is_judged(t) and t.metric in blocking]
    outcome = "passed"
    if check.status == "fail":
        outcome = "failure"
        missed = fmt.missed_thresholds(check, "fail") or fmt.missed_thresholds(check)
        if missed:
            message = "; ".join(f"{t.metric} = {fmt.fmt_num(t.observed)}, required {fmt.fmt_bound(t)}"
                                for t in missed)
            message = f"{len(missed)} threshold{'s' if len(missed) != 1 else ''} missed: {message}"
            text = "\n".join(f"missed: {fmt.describe_threshold(t)}" for t in missed) + f"\n{check.summary}"
        else:
            message, text = check.summary, check.summary
        _element(case, "failure", text, message=_message(message), type="threshold")
    elif check.status == "error":
        outcome = "error"
        error = check.error or "the check raised an error without a message"
        _element(case, "error", error, message=_message(error), type="error")
    elif unjudged:
        outcome = "failure"
        message = "not judged: " + "; ".join(fmt.judgement(t) for t in unjudged)
        _element(case, "failure", "\n".join(fmt.judgement(t) for t in unjudged) + f"\n{check.summary}",
                 message=_message(message), type="not_judged")
    elif check.status == "skipped":
        outcome = "skipped"
        _element(case, "skipped", message=_message(check.skip_reason or "no reason given"))
    elif check.status == "measured":
        outcome = "skipped"
        _element(case, "skipped", message=_message(measured_message(check)))
    out = details
    if check.status == "warn":
        warnings = [f"WARNING: {fmt.describe_threshold(t)}" for t in fmt.missed_thresholds(check)]
        out = "\n".join(warnings or [f"WARNING: {check.summary}"]) + "\n\n" + details
    _element(case, "system-out", out)
    return outcome


def _add_probe(suite: ET.Element, result: AuditResult) -> None:
    """The model probe as a test case of its own: it passes (what in it is bad input exits 2 before
    any report), with its findings as warnings, so the CI test tab shows a non-deterministic model."""
    probe = result.probe
    case = _element(suite, "testcase", classname="deepaudit.probe", name="model_probe", time="0.000")
    lines = [f"WARNING: {f}" for f in probe.findings] or [
        f"no finding: {probe.n_rows} evaluation rows with finite logits; {probe.n_repeat} repeated rows, "
        "same predictions on every call"]
    _element(case, "system-out", "\n".join([*lines, "", probe.method]))


def render_junit(result: AuditResult) -> str:
    """Render the audit as JUnit XML, one ``<testcase>`` per check (and ``model_probe`` after them, when recorded).

    Parameters
    ----------
    result : AuditResult
        The audit.

    Returns
    -------
    str
        ``<testsuites>`` holding one ``<testsuite name="deepaudit">`` whose ``tests``,
        ``failures``, ``errors`` and ``skipped`` count the test cases by outcome; each check is a
        ``<testcase classname="deepaudit.<category>" name="<check id>" time="<seconds>">``, plus
        ``<testcase classname="deepaudit" name="gate">`` when the audit is blocked as not judged.
    """
    checks = result.checks
    total_time = f"{sum(max(c.duration_s, 0.0) for c in checks):.3f}"
    root = ET.Element("testsuites", {"name": "deepaudit"})
    prov = result.provenance
    suite = _element(root, "testsuite", name=f"deepaudit: {fmt.model_title(result)}", timestamp=prov.started_at)
    props = _element(suite, "properties")
    for name, value in (("report_id", prov.report_id), ("tool_version", prov.tool_version),
                        ("schema_version", result.schema_version), ("model", fmt.model_path(result)),
                        ("model_name", fmt.model_name(result)),
                        ("model_version", prov.model_info.version if prov.model_info else None),
                        ("model_owner", prov.model_info.owner if prov.model_info else None),
                        ("seed", prov.seed), ("device", prov.device), ("config_sha256", prov.config_sha256),
                        ("status", result.summary.status), ("exit_code", result.summary.exit_code)):
        if value is not None:
            _element(props, "property", name=name, value=value)
    outcomes = []
    for check in checks:
        blocking = {u.metric for u in result.summary.not_judged if u.blocking and u.check == check.id}
        outcomes.append(_add_testcase(suite, check, blocking))
    if result.probe is not None:
        _add_probe(suite, result)
        outcomes.append("passed")
    if result.summary.status == "not_judged":
        gate = _element(suite, "testcase", classname="deepaudit", name="gate", time="0.000")
        reasons = [line for line in fmt.gate_lines(result) if line.startswith("NOT JUDGED")]
        _element(gate, "failure", "\n".join(reasons), message=_message(fmt.verdict(result)), type="not_judged")
        outcomes.append("failure")
    attrs = {"tests": len(outcomes), "failures": outcomes.count("failure"), "errors": outcomes.count("error"),
             "skipped": outcomes.count("skipped"), "time": total_time}
    for node in (root, suite):
        for key, value in attrs.items():
            node.set(key, str(value))
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
