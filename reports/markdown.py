"""Markdown summary for CI job pages (e.g. ``$GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

import re

from audit.results import AuditResult, CheckResult

from . import _format as fmt

#: Characters with a meaning in (GitHub-flavoured) Markdown or inline HTML; escaped in user text.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|&#~!])")


def escape_md(text: object) -> str:
    """Make ``text`` safe for one Markdown table cell or line.

    Backslash-escapes Markdown punctuation (``|`` included, so cells stay cells, and ``<`` so no
    HTML gets through) and folds line breaks into spaces.

    Parameters
    ----------
    text : object
        Anything; it is converted with ``str``.

    Returns
    -------
    str
    """
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _metrics_cell(check: CheckResult) -> str:
    items = [escape_md(fmt.fmt_metric(m)) for m in fmt.key_metrics(check)]
    return "<br>".join(items) if items else "—"


def _thresholds_cell(check: CheckResult) -> str:
    items = []
    for t in check.thresholds:
        mark = ("met" if t.passed else "**missed, within noise** (warn)" if fmt.within_noise(t) else "**not judged**" if t.note
                else f"**missed**{' (warn)' if t.level == 'warn' else ''}")
        items.append(f"{escape_md(t.metric)} {escape_md(fmt.fmt_bound(t))}: "
                     f"{escape_md(fmt.fmt_num(t.observed))} {mark}")
    return "<br>".join(items) if items else "—"


def _status_cell(check: CheckResult) -> str:
    word = f"**{fmt.status_word(check.status)}**"
    if check.status == "error":
        return f"{word}: {escape_md(check.error or 'no message')}"
    if check.status == "skipped":
        return f"{word}: {escape_md(check.skip_reason or 'no reason given')}"
    return word


def render_markdown(result: AuditResult) -> str:
    """Render a short Markdown summary of the audit.

    Parameters
    ----------
    result : AuditResult
        The audit.

    Returns
    -------
    str
        A heading with the overall status word and verdict, one table row per check
        (check | status | key metrics (value [CI]) | thresholds) and one line per missed
        threshold. Every string from the result is escaped.
    """
    prov = result.provenance
    lines = [
        f"## deepaudit: {escape_md(fmt.verdict(result))}",
        "",
        f"Model {escape_md(fmt.model_path(result))} · report {escape_md(prov.report_id)} · "
        f"deepaudit {escape_md(prov.tool_version)} · exit code {result.summary.exit_code}",
        "",
    ]
    risks = fmt.top_risks(result)
    if risks:
        lines += ["**Top risks**", ""]
        lines += [f"{i}. **{r['status'].upper()}** {escape_md(r['check'])}: {escape_md(r['text'])}"
                  for i, r in enumerate(risks, start=1)]
        lines.append("")
    lines += [
        "| Check | Status | Key metrics (value [95% CI], n) | Thresholds |",
        "| --- | --- | --- | --- |",
    ]
    for check in result.checks:
        name = f"{escape_md(check.title)} ({escape_md(check.id)})"
        lines.append(f"| {name} | {_status_cell(check)} | {_metrics_cell(check)} | {_thresholds_cell(check)} |")
    missed = [(c, t) for c in result.checks for t in fmt.missed_thresholds(c)]
    if missed:
        lines += ["", "### Missed thresholds", ""]
        lines += [f"- **{t.level.upper()}** {escape_md(c.id)}: {escape_md(fmt.describe_threshold(t))}"
                  for c, t in missed]
    return "\n".join(lines) + "\n"
