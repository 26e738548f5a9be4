"""PDF export of the HTML report with headless Chromium (``--print-to-pdf``).

The page has no script and loads nothing from the network, so printing it needs no more than the
browser's print engine; the report's print CSS sets the page breaks. The PDF is written to a
temporary file in the target folder and renamed into place, so a failed print leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from audit.errors import InputError

from .io import _NEW_FILE_MODE

#: Names the Chromium binary goes by on Debian, Ubuntu, Fedora and macOS (Homebrew casks aside).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
#: Flags that keep a headless run offline and free of first-run work.
HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--mute-audio")
INSTALL_HINT = ("install it (Debian/Ubuntu: apt-get install chromium), set DEEPAUDIT_CHROMIUM to its path, "
                "or pass --no-pdf")


class ReportError(InputError):
    """A report could not be produced for a reason the user can fix (e.g. no browser for the PDF). Exit 2."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: ``$DEEPAUDIT_CHROMIUM`` if set, else the first on ``PATH``."""
    override = os.environ.get("DEEPAUDIT_CHROMIUM")
    if override:
        return override if Path(override).is_file() and os.access(override, os.X_OK) else None
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def chromium_command(browser: str, profile: Path, *extra: str) -> list[str]:
    """The headless command line with a throw-away profile folder, plus ``extra`` arguments."""
    return [browser, *HEADLESS_FLAGS, f"--user-data-dir={profile}", *extra]


def render_pdf(html_path: Path, pdf_path: Path, *, timeout_s: float = 120.0) -> Path:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium, atomically.

    Parameters
    ----------
    html_path : Path
        The report page (a self-contained file).
    pdf_path : Path
        Where the PDF goes; its folder is created when missing.
    timeout_s : float
        Longest the browser may take.

    Returns
    -------
    Path
        ``pdf_path``.

    Raises
    ------
    ReportError
        When no Chromium is found, or it fails or produces no PDF.
    """
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path)
    if not html_path.is_file():
        raise ReportError(f"cannot print {html_path} to PDF: the file does not exist.")
    browser = find_chromium()
    if browser is None:
        raise ReportError(f"PDF export needs headless Chromium, which was not found; {INSTALL_HINT}.")
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{pdf_path.name}.", suffix=".tmp", dir=pdf_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tempfile.TemporaryDirectory(prefix="deepaudit-chromium-") as profile:
            cmd = chromium_command(browser, Path(profile), "--no-pdf-header-footer",
                                   f"--print-to-pdf={tmp}", html_path.as_uri())
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
            except subprocess.TimeoutExpired:
                raise ReportError(f"Chromium did not print {html_path.name} within {timeout_s:.0f} s; "
                                  "retry, or pass --no-pdf.") from None
        if proc.returncode != 0 or tmp.stat().st_size == 0 or not tmp.read_bytes()[:5] == b"%PDF-":
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise ReportError(f"Chromium failed to print {html_path.name} to PDF (exit {proc.returncode}: {last}); "
                              "pass --no-pdf to skip the PDF.")
        os.chmod(tmp, _NEW_FILE_MODE)
        os.replace(tmp, pdf_path)
    finally:
        tmp.unlink(missing_ok=True)
    return pdf_path
