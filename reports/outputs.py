"""Output folders as one unit: paths checked before any work, a lock per folder, a staged set.

Three pieces, used by the CLI in this order:

1. :func:`check_output_paths` — every output path is checked before the model is loaded: the
   output folder is a folder (or can be created) and a probe file can really be created in it,
   JUnit/Markdown targets are files in writable folders, and no output lies inside an input folder
   or on an input file.
2. :class:`reports.lock.OutputLock` — a git-style lock file so two audits never write one folder
   at once.
3. :class:`StagedSet` — the files of one report set are written into a staging folder inside the
   output folder (and the PDF printed there), then published by renames with ``SIGINT``/``SIGTERM``
   held back and ``results.json`` last. Until publication the previous set is untouched, so a
   crash, a full disk, a failed print or a signal leaves the old complete set; files of an older
   set that the new one does not write are removed when they belong to another report id.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from audit.errors import InputError

from .io import _NEW_FILE_MODE, _fsync_dir, signals_held

STAGING_PREFIX = ".deepaudit-staging-"
PROBE_PREFIX = ".deepaudit-probe-"
#: Files a report set writes into its folder under fixed names (no other output may take them).
OWN_NAMES = ("results.json", "report.html", "report.pdf", "model_card.md", "model_card.html", "compare.json",
             "compare.html")
#: File names of a report set in its folder (with ``deepaudit report``'s default JUnit and Markdown
#: names); an older set's files of these names that a new set of another report id does not write
#: are removed when the new set is published.
SET_NAMES = (*OWN_NAMES, "junit.xml", "summary.md")


# ----------------------------------------------------------------------------------- path checks


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (as anything, a file included)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def _probe(folder: Path) -> str | None:
    """Create and remove a file in ``folder``; the error text when that is not possible.

    ``os.access`` says yes to root on a read-only mount or a pseudo file system; a real file
    creation says what the audit's writes will meet.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


def _check_folder(folder: Path, flag: str) -> None:
    shown = str(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise InputError(f"{flag} {shown} is an existing file, not a folder; pass a folder path or remove the file.")
    base = _existing_ancestor(folder.absolute())
    if not base.is_dir():
        raise InputError(f"{flag} {shown} cannot be created: {base} is a file, not a folder; choose another path.")
    problem = _probe(base)
    if problem is not None:
        where = "" if base == folder.absolute() else f" (in {base})"
        raise InputError(f"{flag} {shown} is not writable{where}: {problem}; choose a writable folder.")


def _check_file(path: Path, flag: str) -> None:
    shown = str(path)
    if path.is_dir():
        raise InputError(f"{flag} {shown} is a folder; pass a file path, e.g. {path / 'summary.md'}.")
    if os.path.lexists(path) and not path.is_file():
        raise InputError(f"{flag} {shown} is not a regular file; pass a path to a file.")
    parent = path.absolute().parent
    base = _existing_ancestor(parent)
    if not base.is_dir():
        raise InputError(f"{flag} {shown} cannot be written: {base} is a file, not a folder; choose another path.")
    problem = _probe(base)
    if problem is not None:
        raise InputError(f"{flag} {shown} cannot be written: its folder {base} is not writable ({problem}); "
                         "choose a writable folder.")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_paths(out_dir: Path, files: dict[str, Path | None], inputs: dict[str, Path | None], *,
                       out_flag: str = "--out", set_names: tuple[str, ...] = OWN_NAMES) -> None:
    """Check every output path before any work; raise :class:`InputError` naming the first problem.

    Parameters
    ----------
    out_dir : Path
        The output folder (``output.dir`` / ``--out``); created later when missing.
    files : dict of str to Path or None
        Other output files by the flag that names them (``{"--junit": ..., "--markdown": ...}``).
    inputs : dict of str to Path or None
        Input paths by what they are (``{"data.eval.path": ...}``): no output may lie inside an input
        folder (its hash would change on every later run) or replace an input file.
    out_flag : str
        How the user named the output folder, for the message.
    set_names : tuple of str
        File names the report set writes into ``out_dir``; none of them may be an input file.

    Raises
    ------
    InputError
        An output folder that is a file, cannot be created or is not writable (a probe file is
        really created and removed); an output file that is a folder or whose folder is not
        writable; two outputs on one path; an output inside an input folder or on an input file.
    """
    out_dir = Path(out_dir)
    _check_folder(out_dir, out_flag)
    targets = {flag: Path(p) for flag, p in files.items() if p is not None}
    for flag, path in targets.items():
        _check_file(path, flag)
    resolved = {flag: p.resolve() for flag, p in targets.items()}
    seen: dict[Path, str] = {}
    for flag, path in resolved.items():
        if path in seen:
            raise InputError(f"{flag} and {seen[path]} name the same file {targets[flag]}; give each its own path.")
        seen[path] = flag
    out_real = out_dir.resolve()
    for name in set_names:
        if (out_real / name) in seen:
            flag = seen[out_real / name]
            raise InputError(f"{flag} {targets[flag]} is the report's own {name} in {out_flag} {out_dir}; "
                             "choose another file name.")
    for role, given in inputs.items():
        if given is None:
            continue
        source = Path(given).resolve()
        if source.is_dir():
            if _inside(out_real, source):
                raise InputError(f"{out_flag} {out_dir} is inside the input folder {given} ({role}); writing there "
                                 "would change the input (and its hash on every later run). Choose a folder outside it.")
            for flag, path in resolved.items():
                if _inside(path, source):
                    raise InputError(f"{flag} {targets[flag]} is inside the input folder {given} ({role}); "
                                     "choose a path outside it.")
        elif source.is_file():
            for flag, path in resolved.items():
                if path == source:
                    raise InputError(f"{flag} {targets[flag]} is the input file {given} ({role}); writing it would "
                                     "replace the input. Choose another path.")
            if source.parent == out_real and source.name in set_names and role != "results":
                raise InputError(f"the input {given} ({role}) would be replaced by the report's {source.name} in "
                                 f"{out_flag} {out_dir}; choose another output folder.")


# ---------------------------------------------------------------------------------- the staged set


def remove_stale_staging(folder: Path) -> None:
    """Staging folders of runs that were killed (SIGKILL, power loss); call only under the folder's lock."""
    for entry in Path(folder).glob(STAGING_PREFIX + "*"):
        shutil.rmtree(entry, ignore_errors=True)


def _report_id(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["provenance"]["report_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class StagedSet:
    """Write a set of files so that the output folder shows the old set or the new one.

    Files inside ``out_dir`` are written into ``out_dir/.deepaudit-staging-*/`` (same file system,
    so publishing is a rename); files elsewhere (``--junit``/``--markdown`` paths outside the
    folder) into a temporary file beside their target. Nothing visible changes until
    :meth:`publish`, which renames every staged file into place with SIGINT/SIGTERM held back,
    ``results.json`` files last, and first removes the files of an older set (:data:`SET_NAMES`) that
    the new set does not write when that older set has another report id. Leaving the ``with``
    block by an exception before :meth:`publish` removes every staged file.

    Parameters
    ----------
    out_dir : Path
        The output folder; created when missing (and removed again when nothing was published and
        it is empty).
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self._created = False
        self.staging: Path | None = None
        self._staged: list[tuple[Path, Path]] = []  # (staged file, final path)
        self._made: list[Path] = []  # folders created for files outside out_dir, outermost first
        self._published = False

    def __enter__(self) -> StagedSet:
        if not self.out_dir.exists():
            self.out_dir.mkdir(parents=True)
            self._created = True
        self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out_dir))
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.discard()

    def _inside_out(self, path: Path) -> Path | None:
        try:
            return path.absolute().relative_to(self.out_dir.absolute())
        except ValueError:
            return None

    def staged_path(self, final: Path) -> Path:
        """Where the file that will land at ``final`` is written now (its folder exists)."""
        assert self.staging is not None, "use StagedSet in a with block"
        final = Path(final)
        rel = self._inside_out(final)
        if rel is not None:
            staged = self.staging / rel
            staged.parent.mkdir(parents=True, exist_ok=True)
        else:
            missing = [p for p in (final.parent, *final.parent.parents) if not p.exists()]
            final.parent.mkdir(parents=True, exist_ok=True)
            self._made += reversed(missing)
            fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
            os.close(fd)
            staged = Path(name)
        self._staged.append((staged, final))
        return staged

    def where(self, final: Path) -> Path:
        """The staged file of ``final`` (staged earlier)."""
        return next(staged for staged, dest in self._staged if dest == Path(final))

    def write_text(self, final: Path, text: str) -> None:
        """Stage ``text`` (UTF-8, ``\\n`` line endings, fsynced) for ``final``."""
        staged = self.staged_path(final)
        try:
            mode = stat.S_IMODE(Path(final).stat().st_mode)
        except OSError:
            mode = _NEW_FILE_MODE
        with open(staged, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(staged, mode)

    def forget(self, final: Path) -> None:
        """Drop a staged file (e.g. a PDF that failed to print) from the set."""
        for staged, dest in list(self._staged):
            if dest == Path(final):
                staged.unlink(missing_ok=True)
                self._staged.remove((staged, dest))

    def _remove_older_set(self) -> None:
        finals = {dest.absolute() for _, dest in self._staged}
        for staged, dest in self._staged:
            if dest.name != "results.json":
                continue
            folder = dest.absolute().parent
            old = _report_id(dest) if dest.exists() else None
            if old is None or old == _report_id(staged):
                continue
            for name in SET_NAMES:
                path = folder / name
                if path not in finals and path.is_file():
                    path.unlink(missing_ok=True)

    def publish(self) -> None:
        """Rename every staged file into place (``results.json`` last), then drop the staging folder."""
        order = sorted(self._staged, key=lambda item: item[1].name == "results.json")
        with signals_held():
            self._remove_older_set()
            folders = set()
            for staged, final in order:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
                folders.add(final.parent)
            for folder in folders:
                _fsync_dir(folder)
            self._staged = []
            self._published = True
            self.discard()

    def discard(self) -> None:
        """Remove what is still staged (everything, unless published) and the staging folder."""
        for staged, _ in self._staged:
            with contextlib.suppress(OSError):
                staged.unlink()
        self._staged = []
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        if not self._published:
            for folder in reversed(self._made):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if self._created:
                with contextlib.suppress(OSError):
                    self.out_dir.rmdir()
