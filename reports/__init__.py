"""Reports: turn an :class:`~audit.results.AuditResult` into files.

This package never runs a model and reads nothing but the result object, so every report can be
re-rendered later from ``results.json`` alone. Formats: ``results.json`` (the result itself),
a self-contained HTML report (and its PDF, :mod:`reports.pdf`), a model card (:mod:`reports.card`),
JUnit XML for CI test tabs and a Markdown summary for CI job pages.
"""

from __future__ import annotations

from pathlib import Path

from audit.results import AuditResult

from .card import render_card_html, render_card_markdown
from .html import render_html
from .io import atomic_write_text
from .junit import render_junit
from .markdown import render_markdown
from .outputs import StagedSet
from .pdf import PdfError, ReportError, render_pdf

__all__ = ["PdfError", "ReportError", "StagedSet", "atomic_write_text", "render_card_html", "render_card_markdown",
           "render_html", "render_junit", "render_markdown", "render_pdf", "write_reports"]

JSON_NAME = "results.json"
HTML_NAME = "report.html"
PDF_NAME = "report.pdf"
CARD_MD_NAME = "model_card.md"
CARD_HTML_NAME = "model_card.html"


def write_reports(result: AuditResult, out_dir: Path, *, html: bool = True, junit: Path | None = None,
                  markdown: Path | None = None, pdf: bool = False, card: bool = False,
                  staged: StagedSet | None = None) -> dict[str, Path]:
    """Write ``results.json`` (always) and ``report.html`` into ``out_dir``, plus JUnit/Markdown where asked.

    Every format is rendered before anything is written, so a rendering error leaves no file. The
    files are then written as one set (:class:`reports.outputs.StagedSet`): staged inside
    ``out_dir``, the PDF printed there, and renamed into place together at the end, so the folder
    shows the previous complete set until the new one is complete. Files of an older set of another
    report id that this set does not write (e.g. its ``report.pdf``) are removed.

    Parameters
    ----------
    result : AuditResult
        The audit to write.
    out_dir : Path
        Folder for ``results.json`` and ``report.html``; created when missing.
    html : bool
        Write ``report.html``. With ``pdf`` and not ``html`` the page is still rendered, to print it, but
        only the PDF is published (``deepaudit report --format pdf``) — or the page, when the print fails.
    junit : Path or None
        Where to write JUnit XML, if anywhere (used as given, not relative to ``out_dir``).
    markdown : Path or None
        Where to write the Markdown summary, if anywhere (used as given).
    pdf : bool
        Also print the HTML report to ``report.pdf`` with headless Chromium. When the print fails the
        rest of the set is still published and
        :class:`reports.pdf.ReportError` is raised afterwards, with ``written`` set on it.
    card : bool
        Write the model card, ``model_card.md`` and ``model_card.html``.
    staged : StagedSet or None
        Add the files to this open set instead of publishing a set of their own (``deepaudit
        compare`` publishes every model's files and its own in one set).

    Returns
    -------
    dict of str to Path
        ``{"json": ..., "html": ..., "junit": ..., "markdown": ..., "card": ..., "card_html": ...,
        "pdf": ...}``, only for what was written.
    """
    out_dir = Path(out_dir)
    planned: dict[str, tuple[Path, str]] = {"json": (out_dir / JSON_NAME, result.model_dump_json(indent=2))}
    if html or pdf:
        planned["html"] = (out_dir / HTML_NAME, render_html(result))
    if junit is not None:
        planned["junit"] = (Path(junit), render_junit(result))
    if markdown is not None:
        planned["markdown"] = (Path(markdown), render_markdown(result))
    if card:
        planned["card"] = (out_dir / CARD_MD_NAME, render_card_markdown(result))
        planned["card_html"] = (out_dir / CARD_HTML_NAME, render_card_html(result))
    if staged is not None:
        return _stage(staged, planned, pdf=pdf, keep_html=html, out_dir=out_dir)[0]
    with StagedSet(out_dir) as own:
        written, pdf_error = _stage(own, planned, pdf=pdf, keep_html=html, out_dir=out_dir)
        own.publish()
    if pdf_error is not None:
        error = PdfError(f"{pdf_error} The rest of the report was written to {out_dir}.")
        error.written = written
        raise error
    return written


def _stage(staged: StagedSet, planned: dict[str, tuple[Path, str]], *, pdf: bool, keep_html: bool,
           out_dir: Path) -> tuple[dict[str, Path], ReportError | None]:
    written: dict[str, Path] = {}
    for key, (path, text) in planned.items():
        staged.write_text(path, text)
        written[key] = path
    if not pdf:
        return written, None
    target = out_dir / PDF_NAME
    try:
        render_pdf(staged.where(written["html"]), staged.staged_path(target))
    except ReportError as exc:
        staged.forget(target)
        return written, exc  # the page is published in the PDF's place, and the error says so
    if not keep_html:  # staged only to be printed: the PDF was asked for, not the page
        staged.forget(written.pop("html"))
    written["pdf"] = target
    return written, None
