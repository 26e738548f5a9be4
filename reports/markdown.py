"""Markdown summary for CI job pages (e.g. ``$GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

import re

from audit.results import AuditResult, CheckResult

from . import _format as fmt

#: Characters with a meaning in (GitHub-flavoured) Markdown or inline HTML; escaped in user text.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|&#~!])")
#: What GitHub's renderer turns into a link by itself: ``scheme://...``, ``www.``, ``mailto:``/``xmpp:``
#: and e-mail addresses (cmark-gfm's autolink extension). Such text is put in a code span, where no
#: autolink applies; ``|``, ``<`` and ``>`` end it, so they stay escaped outside the span.
_AUTOLINK = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.|mailto:|xmpp:)[^\s<>|]*|[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
                       re.IGNORECASE)
#: A block marker at the start of a line: a bullet, an ordered list item, a setext underline.
_LEADING_BLOCK = re.compile(r"^(?:[-+](?=\s|$)|\d{1,9}(?=[.)](?:\s|$))|[-=]+$)")


def _code_span(text: str) -> str:
    """``text`` as a code span: a backtick fence longer than any run inside, padded where needed."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def escape_md(text: object) -> str:
    """Make ``text`` safe for one Markdown table cell or line.

    Strips control characters (:func:`reports._format.clean_text`), folds line breaks into spaces,
    puts what GitHub would autolink (URLs, ``www.`` names, e-mail addresses) in a code span so it
    shows as text and never as a link, and backslash-escapes Markdown punctuation elsewhere (``|``
    included, so cells stay cells, and ``<`` so no HTML gets through), as well as a block marker
    (``-``, ``+``, ``=``, ``1.``) at the start.

    Parameters
    ----------
    text : object
        Anything; it is converted with ``str``.

    Returns
    -------
    str
    """
    flat = " ".join(fmt.clean_text(text).split())
    parts, last = [], 0
    for match in _AUTOLINK.finditer(flat):
        parts.append(_SPECIAL.sub(r"\\\1", flat[last:match.start()]))
        parts.append(_code_span(match.group()))
        last = match.end()
    parts.append(_SPECIAL.sub(r"\\\1", flat[last:]))
    out = "".join(parts)
    return _LEADING_BLOCK.sub(_escape_marker, out)


def _escape_marker(match: re.Match[str]) -> str:
    """``\\-`` for a bullet or underline, ``1\\.`` for an ordered item (a backslash before a digit is text)."""
    marker = match.group()
    return marker + "\\" if marker.isdigit() else "\\" + marker


def _metrics_cell(check: CheckResult) -> str:
    items = [escape_md(fmt.fmt_metric(m)) for m in fmt.key_metrics(check)]
    return "<br>".join(items) if items else "—"


def _thresholds_cell(check: CheckResult) -> str:
    items = []
    for t in check.thresholds:
        mark = ("met" if t.passed else "**missed, within noise** (warn)" if fmt.within_noise(t) else "**not judged**" if t.note
                else f"**missed** ({t.level})")
        group = f" \\[worst group: {escape_md(t.group)}\\]" if t.group is not None else ""
        items.append(f"{escape_md(t.metric)}{group} {escape_md(fmt.fmt_bound(t))} ({escape_md(fmt.source_word(t.source))}): "
                     f"{escape_md(fmt.fmt_num(t.observed))} {mark}")
    if not items and check.status == "measured":
        return "measured, not judged: no threshold applies"
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
        f"Model **{escape_md(fmt.model_title(result))}**"
        + (f" (owner {escape_md(prov.model_info.owner)})" if prov.model_info and prov.model_info.owner else "")
        + f" · {escape_md(fmt.model_path(result))} · report {escape_md(prov.report_id)} · "
        f"deepaudit {escape_md(prov.tool_version)} · exit code {result.summary.exit_code}",
        "",
    ]
    if result.probe is not None and result.probe.findings:
        lines += ["**Model probe: WARN**", ""]
        lines += [f"- {escape_md(f)}" for f in result.probe.findings]
        lines.append("")
    summary = result.summary
    measured = [c.id for c in result.checks if c.status == "measured"]
    lines += [("Judged: " + (escape_md(", ".join(summary.judged)) if summary.judged else "**nothing**")
               + (f" · measured, not judged: {escape_md(', '.join(measured))}" if measured else "")
               + ". PASS means every judged metric met its bound; bounds come from the config or a built-in default."),
              ""]
    risks = fmt.top_risks(result)
    if risks:
        lines += ["**Top risks**", ""]
        lines += [f"{i}. **{fmt.status_word(r['status'])}** {escape_md(r['check'])}: {escape_md(r['text'])}"
                  for i, r in enumerate(risks, start=1)]
        lines.append("")
    lines += [
        "| Check | Status | Key metrics (value [95% CI], n) | Thresholds |",
        "| --- | --- | --- | --- |",
    ]
    for check in result.checks:
        name = f"{escape_md(check.title)} ({escape_md(check.id)})"
        lines.append(f"| {name} | {_status_cell(check)} | {_metrics_cell(check)} | {_thresholds_cell(check)} |")
    missed = [(c, t) for c in result.checks for t in fmt.missed_thresholds(c) if fmt.is_judged(t)]
    if missed:
        lines += ["", "### Missed thresholds", ""]
        lines += [f"- **{t.level.upper()}** {escape_md(c.id)}: {escape_md(fmt.describe_threshold(t))}"
                  for c, t in missed]
    if summary.not_judged:
        lines += ["", "### Not judged", ""]
        lines += [f"- {'**blocks the gate** ' if u.blocking else ''}{escape_md(fmt.describe_not_judged(u))}"
                  for u in summary.not_judged]
    return "\n".join(lines) + "\n"
