"""Atomic file writes, so a crash never leaves a half-written report behind."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Iterator

#: Mode of a newly created file (mkstemp's 0600 would hide a report from its readers); an
#: existing file keeps its own mode.
_NEW_FILE_MODE = 0o644


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8) so that readers see the old file or the new one, never a mix.

    The text goes to a temporary file in the same folder, is flushed and fsynced, and then
    replaces ``path`` with :func:`os.replace` (atomic on POSIX and Windows within one file
    system). Missing parent folders are created. When anything fails the temporary file is
    removed, ``path`` is left as it was and the exception propagates.

    Parameters
    ----------
    path : Path
        Destination file.
    text : str
        Content; written as UTF-8 with ``\\n`` line endings on every platform.

    Raises
    ------
    OSError
        When the folder cannot be created or the file cannot be written or replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = _NEW_FILE_MODE
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself; best effort (not possible on Windows or some file systems)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block; they are delivered right after it.

    For short steps that must not be cut in half (publishing a report set, killing a browser's
    process group). Python runs signal handlers in the main thread whichever thread the kernel
    picked (a thread mask would not hold back a signal delivered to a torch or OpenMP thread), so
    the handlers themselves are swapped for one that only records the signal; the previous handlers
    come back at the end and each recorded signal is raised again. Outside the main thread, where
    handlers cannot be changed, this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    swapped = [sig for sig, handler in previous.items() if handler not in (None, signal.SIG_IGN)]
    for sig in swapped:
        signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig in swapped:
            signal.signal(sig, previous[sig])
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)
