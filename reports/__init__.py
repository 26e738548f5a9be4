"""Reports: turn an :class:`~audit.results.AuditResult` into files.

This package never runs a model and reads nothing but the result object, so every report can be
re-rendered later from ``results.json`` alone. Formats: ``results.json`` (the result itself),
a self-contained HTML report, JUnit XML for CI test tabs and a Markdown summary for CI job pages.
"""

from __future__ import annotations

from pathlib import Path

from audit.results import AuditResult

from .html import render_html
from .io import atomic_write_text
from .junit import render_junit
from .markdown import render_markdown

__all__ = ["atomic_write_text", "render_html", "render_junit", "render_markdown", "write_reports"]

JSON_NAME = "results.json"
HTML_NAME = "report.html"


def write_reports(result: AuditResult, out_dir: Path, *, html: bool = True, junit: Path | None = None,
                  markdown: Path | None = None) -> dict[str, Path]:
    """Write ``results.json`` (always) and ``report.html`` into ``out_dir``, plus JUnit/Markdown where asked.

    Every format is rendered before anything is written, so a rendering error leaves no partial
    set of files; each file is then written atomically (:func:`reports.io.atomic_write_text`).

    Parameters
    ----------
    result : AuditResult
        The audit to write.
    out_dir : Path
        Folder for ``results.json`` and ``report.html``; created when missing.
    html : bool
        Write ``report.html``.
    junit : Path or None
        Where to write JUnit XML, if anywhere (used as given, not relative to ``out_dir``).
    markdown : Path or None
        Where to write the Markdown summary, if anywhere (used as given).

    Returns
    -------
    dict of str to Path
        ``{"json": ..., "html": ..., "junit": ..., "markdown": ...}``, only for what was written.
    """
    out_dir = Path(out_dir)
    planned: dict[str, tuple[Path, str]] = {"json": (out_dir / JSON_NAME, result.model_dump_json(indent=2))}
    if html:
        planned["html"] = (out_dir / HTML_NAME, render_html(result))
    if junit is not None:
        planned["junit"] = (Path(junit), render_junit(result))
    if markdown is not None:
        planned["markdown"] = (Path(markdown), render_markdown(result))
    written: dict[str, Path] = {}
    for key, (path, text) in planned.items():
        atomic_write_text(path, text)
        written[key] = path
    return written
