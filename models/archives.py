"""Look inside model archives before torch does: refuse what would be unpickled or run as code.

A model file is data. ``torch.export.load``, ``torch.jit.load`` and ``torch.load`` all read zip
archives, and some of what they read is code in disguise. This module inspects an archive with
:mod:`zipfile`, :mod:`json` and :mod:`pickletools` (and :mod:`ast`, in :mod:`models.export_program`),
none of which executes anything, and raises :class:`~models.errors.ModelInputError` with one line
naming the archive entry and the fix, before any loader opens the file.

What loading a ``torch.export`` archive (``.pt2``, torch 2.13) can run, and the check for each:

==============================================  ====================================================
Path in torch                                    Check here
==============================================  ====================================================
weights config ``use_pickle: true``             refused: ``torch.load(weights_only=False)``
(``_package._load_state_dict``)
constants config ``tensor_*`` + ``use_pickle``  refused: ``torch.load(weights_only=False)``
constants ``custom_obj_*``                      refused: TorchScript object unpickler
constants ``opaque_obj_*``                      refused: ``pickle.loads``
legacy ``data/weights|constants/<m>.pt``,       must load with ``torch.load(weights_only=True)``:
``data/sample_inputs/<m>.pt``, the pre-2.8     torch retries a failed safe load with
``serialized_*.pt`` files                        ``weights_only=False`` (``deserialize_torch_artifact``)
``data/aotinductor/``                           refused always: a compiled shared library
the program JSON (``models/<m>.json``):         :mod:`models.export_program`, an allowlist over
shape expressions (``sympy.sympify``), guards   the syntax tree of each (``ast``, never run)
(``exec``), names FX pastes into source,
pytree contexts that ``import_module``
==============================================  ====================================================

Every zip (``.pt2``, TorchScript, ``torch.save``) also gets container checks: a valid zip, no entry
past the end of the file, no entry name twice (torch's reader matches names case-insensitively, so
case-folded), and no entry that inflates more than :data:`MAX_INFLATION` times (a zip bomb).

A ``.pt2`` payload stored as 0 bytes is a tensor torch fills with zeros at its declared size; their
total may not exceed :data:`MAX_ZERO_FILL`.

``allow_pickle=True`` lifts the pickle and code checks (the user trusts the file), never the
container checks, the zero-fill bound or the AOTInductor refusal.
"""

from __future__ import annotations

import io
import json
import pickletools
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from models.errors import ModelInputError
from models.export_program import program_problems

MAX_INFLATION = 100
"""An entry may inflate at most this many times its stored size (plus 1 MiB); deflate reaches ~1000x."""
_SLACK = 1 << 20
MAX_ZERO_FILL = 1 << 30
"""Most bytes of zero-filled tensors a .pt2 may declare with empty payload entries (torch writes none)."""

TRUST_FIX = "or pass --allow-pickle (model.allow_pickle: true) if you trust the file"


def _short(text: Any, n: int = 60) -> str:
    s = str(text)
    return repr(s if len(s) <= n else s[:n] + "...")


# ---------------------------------------------------------------------------------------------
# Zip containers


def open_zip(path: Path, what: str) -> zipfile.ZipFile:
    """Open ``path`` as a zip after the container checks; ``what`` names the format in messages."""
    try:
        size = path.stat().st_size
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise ModelInputError(
            f"model file {path} is not a valid {what}: not a readable zip archive ({_one_line(exc)}); "
            "check that the file is complete, or re-save it."
        ) from None
    try:
        check_zip_entries(zf.infolist(), size, str(path))
    except ModelInputError:
        zf.close()
        raise
    return zf


def check_zip_entries(infos: list[zipfile.ZipInfo], size: int, where: str) -> None:
    """The container checks on a zip's central directory: truncation, duplicate names, bombs."""
    seen: set[str] = set()
    for info in infos:
        key = info.filename.lower()
        if key in seen:
            raise ModelInputError(
                f"model file {where} has the archive entry {_short(info.filename)} twice (names are matched "
                "case-insensitively), so what is checked need not be what is loaded; re-save the model."
            )
        seen.add(key)
        if info.header_offset + info.compress_size > size:
            raise ModelInputError(
                f"model file {where} is truncated or corrupt: archive entry {_short(info.filename)} extends past "
                "the end of the file; copy or save it again."
            )
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise ModelInputError(
                    f"model file {where} is corrupt: stored archive entry {_short(info.filename)} claims "
                    f"{info.file_size} bytes but holds {info.compress_size}; copy or save it again."
                )
        elif info.file_size > MAX_INFLATION * info.compress_size + _SLACK:
            raise ModelInputError(
                f"model file {where}: archive entry {_short(info.filename)} inflates from {info.compress_size} to "
                f"{info.file_size} bytes (over {MAX_INFLATION}x, a zip bomb); re-save the model with torch, "
                "which stores entries uncompressed."
            )


def check_zip_file(path: Path, what: str) -> None:
    """Container checks only (TorchScript and ``torch.save`` archives)."""
    open_zip(path, what).close()


# ---------------------------------------------------------------------------------------------
# Pickles, recognised without running them


def is_pickle_stream(stream: BinaryIO) -> bool:
    """Whether ``stream`` starts with one complete, well-formed pickle (parsed, never executed)."""
    try:
        for opcode, _arg, _pos in pickletools.genops(stream):
            if opcode.name == "STOP":
                return True
    except Exception:  # noqa: BLE001 - pickletools raises ValueError and others on garbage
        return False
    return False


def loads_with_weights_only(data: bytes) -> bool:
    """Whether ``torch.load(weights_only=True)`` reads ``data``: the call torch makes first, before it
    retries with ``weights_only=False`` in ``torch._export.serde.serialize.deserialize_torch_artifact``."""
    import torch

    if data[:4] == b"PK\x03\x04":  # a nested torch.save zip: the same container checks first
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                check_zip_entries(inner.infolist(), len(data), "(nested archive)")
        except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError):
            return False  # torch fails too, and then retries with weights_only=False
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # noqa: BLE001 - any failure makes torch fall back to unpickling
        return False
    return True


# ---------------------------------------------------------------------------------------------
# torch.export archives


def check_export_archive(path: Path, *, allow_pickle: bool) -> None:
    """Refuse a ``.pt2`` whose loading would unpickle, import or run code (see the module docstring).

    Raises
    ------
    ModelInputError
        One line naming the archive entry and the fix.
    """
    with open_zip(path, "torch.export archive") as zf:
        entries = _ExportEntries(zf, path)
        aoti = next((info.filename for name, info in entries if name.startswith("data/aotinductor/")), None)
        if aoti is not None:
            raise ModelInputError(
                f"model file {path} holds AOTInductor compiled code (archive entry {_short(aoti)}), a shared library "
                "that runs when loaded; deepaudit never loads it. Save the program with torch.export.save instead."
            )
        for name, info in entries:  # a resource guard, so it holds with allow_pickle too
            if name.startswith(("data/weights/", "data/constants/")) and name.endswith("_config.json"):
                _check_zero_fill(entries, info, name.split("/")[1])
        if allow_pickle:
            return
        for name, info in entries:
            if name.startswith("data/weights/") and name.endswith("_weights_config.json"):
                _check_payload_config(entries, info, "weights")
            elif name.startswith("data/constants/") and name.endswith("_constants_config.json"):
                _check_payload_config(entries, info, "constants")
            elif name.startswith("models/") or name == "serialized_exported_program.json":
                _check_program(entries, info)
            elif _is_torch_artifact(name):
                data = entries.read(info)
                if data and not loads_with_weights_only(data):
                    raise ModelInputError(
                        f"model file {path}: archive entry {_short(info.filename)} is a pickle that "
                        "torch.load(weights_only=True) refuses, and torch.export.load would then unpickle it, "
                        f"which can run arbitrary code. Re-save the model with torch.export.save, {TRUST_FIX}."
                    )


def _is_torch_artifact(name: str) -> bool:
    """Entries that ``torch.export.load`` hands to ``deserialize_torch_artifact`` (safe load, then unpickle)."""
    if name.startswith(("data/sample_inputs/", "data/weights/", "data/constants/")):
        return name.endswith(".pt")  # <model>.pt: sample inputs, legacy weights, legacy constants
    return name in ("serialized_state_dict.pt", "serialized_constants.pt", "serialized_example_inputs.pt",
                    "serialized_state_dict.json", "serialized_constants.json")


class _ExportEntries:
    """Entry names as torch's readers see them, case-folded.

    ``PT2ArchiveReader`` strips the archive's root folder and matches names case-insensitively (miniz);
    the pre-2.8 fallback in ``torch.export.load`` reads top-level names with :mod:`zipfile`. Each entry is
    listed under both spellings, so a check never misses an entry either reader would load.
    """

    def __init__(self, zf: zipfile.ZipFile, path: Path) -> None:
        self.zf, self.path = zf, path
        self._entries: list[tuple[str, zipfile.ZipInfo]] = []
        for info in zf.infolist():
            full = info.filename.lower()
            self._entries.append((full, info))
            if "/" in full:
                self._entries.append((full.split("/", 1)[1], info))

    def __iter__(self) -> Iterator[tuple[str, zipfile.ZipInfo]]:
        return iter(self._entries)

    def size(self, name: str) -> int | None:
        """The stored size of the entry torch's reader would find under ``name`` (case-folded), if any."""
        return next((info.file_size for n, info in self._entries if n == name), None)

    def read(self, info: zipfile.ZipInfo) -> bytes:
        try:
            return self.zf.read(info)
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
            raise ModelInputError(
                f"model file {self.path}: archive entry {_short(info.filename)} cannot be read ({_one_line(exc)}); "
                "the file is corrupt or not written by torch: copy or save it again."
            ) from None

    def json(self, info: zipfile.ZipInfo) -> Any:
        try:
            return json.loads(self.read(info))
        except (ValueError, RecursionError) as exc:
            raise ModelInputError(
                f"model file {self.path}: archive entry {_short(info.filename)} is not valid JSON "
                f"({_one_line(exc)}); re-save the model with torch.export.save."
            ) from None


def _check_payload_config(entries: _ExportEntries, info: zipfile.ZipInfo, kind: str) -> None:
    """``*_weights_config.json`` / ``*_constants_config.json``: which payloads torch would unpickle."""
    config = entries.json(info)
    items = config.get("config") if isinstance(config, dict) else None
    if not isinstance(items, dict):
        raise ModelInputError(
            f"model file {entries.path}: archive entry {_short(info.filename)} has no 'config' mapping; "
            "re-save the model with torch.export.save."
        )
    where = f"model file {entries.path}"
    for fqn, meta in items.items():
        if not isinstance(meta, dict):
            continue
        path_name = str(meta.get("path_name", ""))
        entry = f"data/{kind}/{path_name}"
        what = None
        if kind == "weights":
            if meta.get("use_pickle"):
                what = f"a pickled weight {_short(fqn)}"
        elif path_name.startswith("tensor_"):
            if meta.get("use_pickle"):
                what = f"a pickled constant {_short(fqn)}"
        elif path_name.startswith("custom_obj_"):
            what = f"a custom (TorchScript) object constant {_short(fqn)}"
        elif path_name.startswith("opaque_obj_"):
            what = f"an opaque Python object constant {_short(fqn)}"
        else:
            raise ModelInputError(
                f"{where}: archive entry {_short(info.filename)} lists constant {_short(fqn)} of unknown "
                f"kind ({_short(path_name)}); re-save the model with torch.export.save."
            )
        if what is not None:
            raise ModelInputError(
                f"{where} holds {what} (archive entry {_short(entry)}) that torch.export.load would unpickle, which "
                f"can run arbitrary code. Re-save it with torch.export.save from a model with plain tensors, {TRUST_FIX}."
            )


def _check_zero_fill(entries: _ExportEntries, info: zipfile.ZipInfo, kind: str) -> None:
    """A payload stored as 0 bytes is a tensor torch fills with zeros at the size its config declares:
    a few bytes of JSON could ask for terabytes. Their declared total must stay within MAX_ZERO_FILL."""
    import torch
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE

    config = entries.json(info)
    items = config.get("config") if isinstance(config, dict) else None
    total = 0
    for fqn, meta in (items or {}).items() if isinstance(items, dict) else []:
        tensor = meta.get("tensor_meta") if isinstance(meta, dict) and not meta.get("use_pickle") else None
        stored = entries.size(f"data/{kind}/{str(meta.get('path_name', '')).lower()}") if tensor else None
        if not isinstance(tensor, dict) or stored != 0:
            continue
        try:
            dtype = _SERIALIZE_TO_TORCH_DTYPE[tensor["dtype"]]
            numel = 1
            for dim in tensor["sizes"]:
                numel *= max(int(dim["as_int"]), 0)
            total += numel * torch.empty(0, dtype=dtype).element_size()
        except (KeyError, TypeError, ValueError):
            continue  # torch refuses a malformed tensor_meta itself, before allocating
        if total > MAX_ZERO_FILL:
            raise ModelInputError(
                f"model file {entries.path}: archive entry {_short(info.filename)} declares {fqn!r} and other empty "
                f"payloads as {total} bytes of zeros (over {MAX_ZERO_FILL}) that torch would allocate; "
                "re-save the model with torch.export.save."
            )


def _check_program(entries: _ExportEntries, info: zipfile.ZipInfo) -> None:
    program = entries.json(info)
    for problem in program_problems(program):
        raise ModelInputError(
            f"model file {entries.path}: archive entry {_short(info.filename)} has {problem}, which "
            f"torch would run as Python code. Re-export the model with torch.export.save, {TRUST_FIX}."
        )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
