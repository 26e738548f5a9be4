"""PDF export of the HTML report with headless Chromium (``--print-to-pdf``).

The page has no script and loads nothing from the network, so printing it needs no more than the
browser's print engine; the report's print CSS sets the page breaks. The PDF is written to a
temporary file in the target folder and renamed into place, so a failed print leaves nothing behind;
the browser runs in its own process group, killed as a whole when the print fails, times out or is
interrupted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from audit.errors import InputError

from .io import _NEW_FILE_MODE, signals_held

#: Names the Chromium binary goes by on Debian, Ubuntu, Fedora and macOS (Homebrew casks aside).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
#: Flags that keep a headless run offline and free of first-run work.
HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--mute-audio")
INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install chromium) or set DEEPAUDIT_CHROMIUM to its path"


class ReportError(InputError):
    """A report could not be produced for a reason the user can fix (e.g. no browser for the PDF). Exit 2.

    ``written`` lists the files that were written all the same (the rest of a report set whose PDF
    failed), or is ``None``.
    """

    written: dict[str, Path] | None = None


class PdfError(ReportError):
    """The PDF could not be printed (no browser, or it failed or timed out). The message names no option to
    skip the PDF: that depends on the command, and the CLI adds it (``--no-pdf`` for ``audit``, dropping
    ``pdf`` from ``--format`` for ``report``)."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: ``$DEEPAUDIT_CHROMIUM`` if set, else the first on ``PATH``."""
    override = os.environ.get("DEEPAUDIT_CHROMIUM")
    if override:
        return override if Path(override).is_file() and os.access(override, os.X_OK) else None
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def require_chromium() -> str:
    """The Chromium binary (:func:`find_chromium`), or :class:`ReportError` saying how to get one."""
    browser = find_chromium()
    if browser is None:
        raise PdfError(f"PDF export needs headless Chromium, which was not found; {INSTALL_HINT}.")
    return browser


def chromium_command(browser: str, profile: Path, *extra: str) -> list[str]:
    """The headless command line with a throw-away profile folder, plus ``extra`` arguments."""
    return [browser, *HEADLESS_FLAGS, f"--user-data-dir={profile}", *extra]


def render_pdf(html_path: Path, pdf_path: Path, *, timeout_s: float = 120.0) -> Path:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium, atomically.

    Chromium runs in its own session (process group) with a throw-away folder for its profile and
    temporaries (``TMPDIR``). On a timeout, an error, ``KeyboardInterrupt`` or any other exception
    (the CLI turns SIGTERM into one) the whole group is killed, the folder and the partial PDF are
    removed and the exception propagates: no browser process and no temporary file outlive the call.

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
    PdfError
        When no Chromium is found, or it fails, times out or produces no PDF.
    """
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path)
    if not html_path.is_file():
        raise ReportError(f"cannot print {html_path} to PDF: the file does not exist.")
    browser = require_chromium()
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{pdf_path.name}.", suffix=".tmp", dir=pdf_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tempfile.TemporaryDirectory(prefix="deepaudit-chromium-") as scratch:
            profile, temporaries = Path(scratch) / "profile", Path(scratch) / "tmp"
            temporaries.mkdir()
            cmd = chromium_command(browser, profile, "--no-pdf-header-footer", f"--print-to-pdf={tmp}",
                                   html_path.as_uri())
            env = {**os.environ, "TMPDIR": str(temporaries)}
            returncode, stderr = _run_in_own_group(cmd, env, timeout_s, html_path.name)
        if returncode != 0 or tmp.stat().st_size == 0 or not tmp.read_bytes()[:5] == b"%PDF-":
            last = (stderr.strip().splitlines() or ["no message"])[-1]
            raise PdfError(f"Chromium failed to print {html_path.name} to PDF (exit {returncode}: {last}).")
        os.chmod(tmp, _NEW_FILE_MODE)
        os.replace(tmp, pdf_path)
    finally:
        tmp.unlink(missing_ok=True)
    return pdf_path


def _run_in_own_group(cmd: list[str], env: dict[str, str], timeout_s: float, name: str) -> tuple[int, str]:
    """Run ``cmd`` as the leader of a new session; kill its whole group unless it ends by itself."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, errors="replace", env=env, start_new_session=True)
    try:
        try:
            _, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise PdfError(f"Chromium did not print {name} within {timeout_s:.0f} s; retry.") from None
        return proc.returncode, stderr or ""
    finally:
        # Chromium's helpers (zygote, GPU, renderer) stay in the group even after the leader exits.
        with signals_held():
            kill_group(proc)


def kill_group(proc: subprocess.Popen, *, grace_s: float = 2.0) -> None:
    """Kill the process group that ``proc`` leads (SIGTERM, then SIGKILL) and reap ``proc``."""
    pgid = proc.pid
    if not hasattr(os, "killpg"):  # Windows: no process groups to signal
        with contextlib.suppress(OSError):
            proc.kill()
    for sig in (signal.SIGTERM, signal.SIGKILL) if hasattr(os, "killpg") else ():
        if proc.poll() is not None and not _group_alive(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (proc.poll() is None or _group_alive(pgid)):
            time.sleep(0.02)
    with contextlib.suppress(Exception):
        proc.wait(timeout=grace_s)
    if proc.stderr is not None:
        with contextlib.suppress(Exception):
            proc.stderr.close()


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is alive (zombies, which cannot run, do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
