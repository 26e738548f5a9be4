"""The HTML report: one self-contained, offline, printable file a compliance officer can file.

The page is a Jinja2 template (``templates/report.html.j2``, with its macros in ``_macros.html.j2``
and its CSS in ``_style.css.j2``) rendered with autoescaping on, so every string that comes from
the result (model paths, summaries, table cells, attestations) is escaped. Figures are inline PNG
``data:`` URIs; the page loads nothing from the network and contains no script.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from audit.results import AuditResult, Figure

from . import _format as fmt
from . import traceability
from ._layout import numbered_methods, split_metrics
from .attestations import attestation_rows, open_attestations
from .figures import render_figure

TEMPLATE_DIR = Path(__file__).parent / "templates"
#: Rows of an evidence table shown in the report; the full table stays in ``results.json``.
MAX_TABLE_ROWS = 200
#: Evidence tables with at least this many columns are set in smaller type (``table.wide``).
WIDE_TABLE_COLUMNS = 8


#: Characters after which a long identifier (``demographic_parity_difference``, ``colour × sex=Black|Female``,
#: a path) may wrap, so a table with many such columns fits the page instead of running off its edge.
_BREAK_AFTER = re.compile(r"([_/|=,])(?=\S)")


def _breakable(value: Any) -> Markup:
    """``value`` as text (:func:`_format.fmt_cell`), escaped, with ``<wbr>`` after ``_ / | = ,``: a line
    break opportunity the browser takes only when the cell would otherwise overflow its table."""
    text = escape(fmt.clean_text(fmt.fmt_cell(value)))
    return Markup(_BREAK_AFTER.sub(r"\1<wbr>", str(text)))


def _figure_html(fig: Figure) -> Markup:
    # render_figure escapes everything it takes from the figure, so its output is safe markup.
    return Markup(render_figure(fig))


def _without_control_characters(value: Any) -> Any:
    """Every ``{{ … }}`` output without NUL, ESC and other control characters (``_format.clean_text``):
    escaping makes them harmless to the browser, but they do not belong in a filed document."""
    if isinstance(value, Markup):
        return Markup(fmt.clean_text(value))
    return fmt.clean_text(value) if isinstance(value, str) else value


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja2 environment for the report templates (autoescaping on, strict undefined).

    Returns
    -------
    Environment
        Shared and cached; templates that extend ``report.html.j2`` can be loaded from it.
    """
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        finalize=_without_control_characters,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        num=fmt.fmt_num,
        cell=fmt.fmt_cell,
        breakable=_breakable,
        value=fmt.fmt_value,
        ci=fmt.fmt_ci,
        bound=fmt.fmt_bound,
        duration=fmt.fmt_duration,
        word=fmt.status_word,
        yaml=fmt.to_yaml,
        figure=_figure_html,
    )
    env.globals.update(
        key_metrics=fmt.key_metrics,
        top_risks=fmt.top_risks,
        missed=fmt.missed_thresholds,
        anchor=fmt.anchor,
        statuses=fmt.STATUSES,
        status_meaning=fmt.STATUS_MEANING,
        not_judged_line=fmt.describe_not_judged,
        max_table_rows=MAX_TABLE_ROWS,
        wide_table_columns=WIDE_TABLE_COLUMNS,
        missing=fmt.MISSING,
        requirements_for=traceability.requirements_for,
        numbered_methods=numbered_methods,
    )
    return env


def signatories(result: AuditResult) -> list[dict[str, str]]:
    """``report.signatories`` of the config the audit ran with (role, name); empty when none were set."""
    report = result.provenance.config.get("report") or {}
    items = report.get("signatories") or [] if isinstance(report, dict) else []
    return [{"role": str(s.get("role", "")), "name": str(s.get("name", ""))} for s in items if isinstance(s, dict)]


def template_context(result: AuditResult) -> dict[str, Any]:
    """The variables the report templates are rendered with.

    Parameters
    ----------
    result : AuditResult
        The audit.

    Returns
    -------
    dict
        ``result``, ``prov`` (its provenance), ``summary``, the ``verdict`` sentence, the
        ``verdict_detail`` (the sentence without its status word), the ``model_path``, the ``model_title``
        (name and version) and the ``model_details`` (label → text).
    """
    verdict = fmt.verdict(result)
    splits = [split_metrics(check) for check in result.checks]
    return {
        "result": result,
        "prov": result.provenance,
        "summary": result.summary,
        "verdict": verdict,
        "verdict_detail": verdict.partition(" ")[2],
        "model_path": fmt.model_path(result),
        "model_title": fmt.clean_text(fmt.model_title(result)),
        "model_details": {label: fmt.clean_text(text) for label, text in fmt.model_details(result)},
        "trace_rows": traceability.trace_rows(result),
        "trace_sources": traceability.load_mapping().sources,
        "unmapped": traceability.unmapped_checks(result),
        "attestation_rows": attestation_rows(result),
        "open_attestations": open_attestations(result),
        "signatories": signatories(result),
        "metric_splits": splits,
        "appendix": [(i, check, split) for i, (check, split) in enumerate(zip(result.checks, splits), start=1)
                     if split.appendix],
    }


def render_html(result: AuditResult, *, template: str = "report.html.j2") -> str:
    """Render the audit as one self-contained HTML page.

    Parameters
    ----------
    result : AuditResult
        The audit to show; nothing else is read, so a report can be re-rendered from
        ``results.json`` alone.
    template : str
        Template name in ``reports/templates``; a template that extends the default one can
        override its blocks (e.g. ``compliance``, to add a compliance mapping).

    Returns
    -------
    str
        The page. Rendering the same result twice gives the same text.
    """
    return environment().get_template(template).render(template_context(result))


def render_index(title: str, entries: list[dict[str, Any]]) -> str:
    """A self-contained index of several audits (the demo writes one per model).

    Parameters
    ----------
    title : str
    entries : list of dict
        Each ``{"name", "description", "href", "result": AuditResult, "files": [(label, href), ...]}``;
        hrefs relative to where the index is written.
    """
    return environment().get_template("index.html.j2").render(title=title, entries=entries)
