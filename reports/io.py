"""Atomic file writes, so a crash never leaves a half-written report behind."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
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
    """Hold SIGINT and SIGTERM back in this thread for the block; they are delivered right after.

    For short steps that must not be cut in half (publishing a report set, killing a browser's
    process group). A no-op where the platform has no ``pthread_sigmask``.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
