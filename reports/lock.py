"""A git-style lock on an output folder, so two runs never write one folder at once."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from audit.errors import InputError

from .outputs import remove_stale_staging

LOCK_NAME = ".deepaudit.lock"


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says about the run that holds it."""

    pid: int | None
    host: str
    started: str
    command: str

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid is not None else "an unknown process"
        what = f" ({self.command})" if self.command else ""
        return f"{pid} on host {self.host or 'unknown'}, started {self.started or 'at an unknown time'}{what}"


def _read_holder(path: Path) -> LockHolder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pid = data.get("pid")
        return LockHolder(pid=pid if isinstance(pid, int) else None, host=str(data.get("host", "")),
                          started=str(data.get("started", "")), command=str(data.get("command", "")))
    except (OSError, ValueError, AttributeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is as dead as a process gets
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    except (OSError, IndexError):
        return True


class OutputLock:
    """A git-style lock on an output folder: ``<folder>/.deepaudit.lock``.

    Taken with ``O_CREAT | O_EXCL`` (one creator wins on every local and network file system that
    honours it) and holding pid, host and start time as JSON. A lock whose pid is dead on this host
    is stale and taken over (:attr:`took_over` names the old holder); a live holder, or one on
    another host, makes :meth:`acquire` raise :class:`InputError` naming it.

    Parameters
    ----------
    folder : Path
        The output folder; created when missing (and removed again on release when it is empty).
    command : str
        What this run is, for the message another run shows (e.g. ``"deepaudit audit"``).
    """

    def __init__(self, folder: Path, command: str = "deepaudit") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.took_over: LockHolder | None = None
        self._created_folder = False
        self._held = False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": self.command}
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(info) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _busy(self, holder: LockHolder | None) -> InputError:
        who = holder.describe() if holder else "a run whose lock file cannot be read"
        return InputError(f"{self.folder} is being written by another deepaudit run ({who}); wait for it to finish "
                          f"or choose another output folder. If no such run exists, delete {self.path}.")

    def acquire(self) -> OutputLock:
        """Take the lock, or raise :class:`InputError` naming the holder."""
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            self._created_folder = True
        if not self._create():
            holder = _read_holder(self.path)
            stale = (holder is not None and holder.pid is not None and holder.host == socket.gethostname()
                     and not _pid_alive(holder.pid))
            if not stale or not self._take_over(holder):
                raise self._busy(_read_holder(self.path) or holder)
            self.took_over = holder
        self._held = True
        remove_stale_staging(self.folder)
        return self

    def _take_over(self, holder: LockHolder) -> bool:
        """Move the stale lock aside and create ours; False when another run got there first."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return self._create()
        if _read_holder(aside) != holder:  # another run took it over between our read and the move
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return self._create()

    def release(self) -> None:
        """Remove the lock file (and the folder when this lock created it and it is empty)."""
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False
        if self._created_folder:
            with contextlib.suppress(OSError):
                self.folder.rmdir()

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
