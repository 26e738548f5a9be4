"""Load the audit's data sets: npz, CSV, Parquet, image folders and saved Hugging Face datasets.

``load_dataset(spec, name)`` is the one entry point. It returns an :class:`AuditDataset` holding
the inputs, integer class targets, sensitive features and provenance (format, SHA-256). Every
problem with the user's data is an :class:`~audit.errors.InputError` whose one-line message starts
with ``data.<name>:`` and says how to fix it. Loading only reads: nothing on disk is changed.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import math
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.lib import format as npy_format
from PIL import Image

from audit.config import DataSpec, InputKind, format_size
from audit.errors import InputError
from audit.rows import (ArrayRows, DatasetImages, DatasetRows, FileImages, FileRows, ImageRows, MappedRows, ParquetRows,
                        Rows, model_dtype)

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_HF_INPUT_COLUMNS = ("image", "img", "pixel_values", "x", "text")
_GRAY_MODES = frozenset({"1", "L", "LA", "I;16", "I;16B", "I;16L"})
_CHUNK = 1 << 20
_READ_CHUNK = 1 << 20  # bytes per read while streaming an npz member
_DEFLATE_MAX_RATIO = 1032  # deflate cannot expand data more than about 1032:1 (zlib's technical details)
_SUPPORTED = ("supported: .npz, .npy, .csv, .parquet/.pq, an image folder (one subfolder per class) or a save_to_disk "
              "folder")


@dataclass(frozen=True, eq=False)
class AuditDataset:
    """One loaded data set, ready for the checks; fields are described where they are declared."""

    name: str  # the role given by the caller: "eval", "reference" or "ood"
    #: Rows (read when taken: float32 (N,C,H,W) / (N,F) / (N,T,F), int64 (N,T) token ids) or list[str] text.
    #: A numpy array given here is wrapped in an ArrayRows of its own dtype.
    inputs: Rows | list[str]
    target: np.ndarray | None  # int64 class indices of shape (N,); None when unlabelled
    class_names: list[str] | None  # label names in index order when the data defines them, else None
    sensitive_features: pd.DataFrame | None  # one column per attribute, N rows, index 0..N-1
    feature_names: list[str] | None  # tabular column names in input order
    input_kind: InputKind | None  # what the data looks like; None if ambiguous
    path: str  # the source path as given
    format: str  # the resolved format: npz, csv, parquet, image_folder or hf_dataset
    sha256: str  # of the file; for a folder, of the sorted (relative path, file sha256) list
    indices: np.ndarray | None = None  # original row indices kept by max_samples, else None

    def __post_init__(self) -> None:
        if isinstance(self.inputs, np.ndarray):
            object.__setattr__(self, "inputs", ArrayRows(self.inputs))

    def __len__(self) -> int:
        return len(self.inputs)

    def select(self, rows: np.ndarray) -> Rows | list[str]:
        """The inputs of rows ``rows``, unread: a view the model reads a batch at a time (a list for text)."""
        if isinstance(self.inputs, list):
            return [self.inputs[int(i)] for i in rows]
        return self.inputs.subset(np.asarray(rows, dtype=np.int64))

    def take(self, rows: np.ndarray) -> np.ndarray | list[str]:
        """Model-ready inputs of rows ``rows`` (a list of strings for text): only those rows are read."""
        if isinstance(self.inputs, list):
            return [self.inputs[int(i)] for i in rows]
        return self.inputs.take(rows)


@dataclass
class _Images:
    """Images not decoded yet: a name per image (for messages) and a picklable function opening image i."""

    sources: list[str]
    open: Callable[[int], Image.Image]

    def __len__(self) -> int:
        return len(self.sources)


@dataclass
class _Raw:
    """What a format reader returns, before validation and subsampling."""

    inputs: Rows | list[str] | _Images
    target: np.ndarray | None = None
    class_names: list[str] | None = None
    sensitive: pd.DataFrame | None = None
    feature_names: list[str] | None = None
    n: int | None = None  # set by a reader that applied max_samples itself: the rows in the file
    keep: np.ndarray | None = None  # ... and the original indices of the rows it kept (None: all)


# ------------------------------------------------------------------------------------ public API


def load_dataset(spec: DataSpec, name: str, *, class_names: list[str] | None = None, seed: int = 0,
                 batch_size: int = 256) -> AuditDataset:
    """Load, validate and optionally subsample one data set; its inputs stay stored until rows are taken.

    Parameters
    ----------
    spec : DataSpec
        The user's config for this data set.
    name : str
        Its role ("eval", "reference", "ood"); error messages start with ``data.<name>:``.
    class_names : list of str, optional
        The model's class names in logit order. String labels are mapped to them by name.
    seed : int, default 0
        Seed of the random subset drawn when ``spec.max_samples`` is smaller than the data set.
    batch_size : int, default 256
        Rows the model is given at once: one batch of model-ready rows counts in the memory budget.

    Returns
    -------
    AuditDataset
        Array inputs are a :class:`~audit.rows.Rows`: an uncompressed .npz member or .npy file, image files,
        Parquet row groups and saved HF datasets are read when rows are taken; a compressed .npz member's kept
        rows are held in their stored dtype; CSV and HF tables are held as float32.

    Raises
    ------
    InputError
        Missing path, unreadable file, missing column or array, invalid labels or inputs, no samples, a set
        over its memory budget.
    """
    where = f"data.{name}"
    path = Path(spec.path)
    if not path.exists():
        raise InputError(f"{where}: {path} does not exist. Fix {where}.path (paths in a config file are relative to it).")
    try:
        fmt = detect_format(path) if spec.format == "auto" else spec.format
    except InputError as exc:
        raise InputError(f"{where}: {exc} Or set {where}.format.") from None
    folder = fmt in ("image_folder", "hf_dataset")
    if path.is_dir() != folder:
        need, got = ("a folder", "a file") if folder else ("a file", "a folder")
        raise InputError(f"{where}: format {fmt} needs {need} but {path} is {got}. Fix {where}.path or {where}.format.")
    readers = {"npz": _read_npz, "npy": _read_npy, "csv": _read_table, "parquet": _read_table,
               "image_folder": _read_image_folder}
    raw = readers.get(fmt, _read_hf)(path, fmt, spec, where, class_names, seed, batch_size)

    subset_done = raw.n is not None  # the npz reader reads only the kept rows
    n = raw.n if subset_done else len(raw.inputs)
    if n == 0:
        raise _no_samples(path, where)
    keep = raw.keep if subset_done else _subset(n, spec.max_samples, seed)
    rows = np.arange(n) if keep is None else keep

    inputs: Rows | list[str]
    kind: InputKind | None
    if isinstance(raw.inputs, _Images):
        inputs, kind = _image_rows(raw.inputs, rows, spec, where, batch_size), "image"
        inputs = inputs if keep is None else inputs.subset(keep)
    elif isinstance(raw.inputs, list):
        inputs, kind = (raw.inputs if subset_done else [raw.inputs[i] for i in rows]), "text"
    else:
        inputs = raw.inputs if keep is None or subset_done else raw.inputs.subset(keep)
        kind = "tabular" if raw.feature_names is not None else _infer_kind(inputs)
        _check_finite(inputs, where, keep)
    target = raw.target if raw.target is None or keep is None or subset_done else raw.target[keep]
    sensitive = raw.sensitive
    if sensitive is not None and keep is not None and not subset_done:
        sensitive = sensitive.iloc[keep].reset_index(drop=True)
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise InputError(f"{where}: {path} cannot be read ({_brief(exc)}).") from None
    return AuditDataset(
        name=name, inputs=inputs, target=target, class_names=raw.class_names, sensitive_features=sensitive,
        feature_names=raw.feature_names, input_kind=kind, path=str(spec.path), format=fmt, sha256=digest, indices=keep,
    )


def detect_format(path: Path) -> str:
    """Resolve ``format: auto``: npz, csv, parquet, image_folder or hf_dataset; InputError for anything else."""
    path = Path(path)
    if path.is_dir():
        if any((path / marker).is_file() for marker in _HF_MARKERS):
            return "hf_dataset"
        if any(sub.is_dir() and any(_is_image(f) for f in sub.rglob("*")) for sub in path.iterdir()):
            return "image_folder"
        raise InputError(f"{path} is a folder but neither a saved Hugging Face dataset nor an image folder; {_SUPPORTED}.")
    suffix = path.suffix.lower()
    formats = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
    if suffix not in formats:
        raise InputError(f"{path}: unsupported data format {suffix or '(no suffix)'!r}; {_SUPPORTED}.")
    return formats[suffix]


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file (read in 1 MiB chunks), or of a folder's sorted (relative path, file SHA-256) list."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted((f.relative_to(path).as_posix(), f) for f in path.rglob("*") if f.is_file())
        for rel, file in files:
            digest.update(f"{rel}\t{file_sha256(file)}\n".encode())
        return digest.hexdigest()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------- readers


def _read_npz(path: Path, fmt: str, spec: DataSpec, where: str, class_names: list[str] | None, seed: int,
              batch_size: int) -> _Raw:
    """Read only what the audit keeps: every array's .npy header first (shape, dtype, size checked against
    the zip entry and the memory budget). Inputs stored uncompressed (numpy.savez) stay in the file and are read
    when rows are taken; compressed ones (numpy.savez_compressed) are inflated once, as a stream, keeping only
    the kept rows in their stored dtype. Labels and sensitive features are read (kept rows only)."""
    if isinstance(spec.features, list):
        raise InputError(f"{where}: for .npz, features is the name of one array (e.g. 'x'), not a list. Fix {where}.features.")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{where}: {path} is not a valid .npz file (not a zip archive). Write it with numpy.savez.")
    x_name = spec.text_column or spec.features or "x"
    wanted = [(x_name, "text_column" if spec.text_column else "features")] + ([(spec.target, "target")] if spec.target else [])
    wanted += [(s, "sensitive_features") for s in spec.sensitive_features]
    try:
        with zipfile.ZipFile(path) as zf:
            entries = {(e.filename[:-4] if e.filename.endswith(".npy") else e.filename): e for e in zf.infolist()}
            for array, key in wanted:
                if array not in entries:
                    raise _missing(where, "array", array, list(entries), key)
            heads = {array: _npy_header(zf, entries[array], array, path, where) for array, _ in wanted}
            _check_npz_shapes(heads, spec, x_name, where)
            n = heads[x_name].shape[0]
            keep = _subset(n, spec.max_samples, seed)
            _check_npz_budget(heads, spec, x_name, n, keep, path, where, batch_size)
            whole = _labels_read_whole(heads, spec)
            stored = _stays_in_file(heads[x_name])
            arrays = {a: _read_member(zf, path, h, None if a == whole else keep) for a, h in heads.items()
                      if not (a == x_name and stored)}
            if stored:
                head = heads[x_name]
                if keep is None:  # every row will be read: check the member's CRC-32 first, streamed
                    _verify_crc(zf, head.entry)
                kind = MappedRows if head.fortran and len(head.shape) > 1 else FileRows
                in_file = kind(path, _stored_data_offset(path, head.entry) + head.header_bytes, head.shape, head.dtype,
                               model_dtype(head.shape, head.dtype))
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error,
            struct.error) as exc:
        raise InputError(f"{where}: {path} is not a valid .npz file ({_brief(exc)}).") from None

    inputs: Rows | list[str]
    if stored:
        inputs = in_file if keep is None else in_file.subset(keep)
    else:
        x = arrays[x_name]
        text = x.ndim == 1 and x.dtype.kind in "US"  # a 1-D array of strings is raw text
        inputs = [str(v) for v in x.tolist()] if text else _array_rows(x, f"array {x_name!r}", where)
    target, names = None, None
    if spec.target:
        y = arrays[spec.target]
        y = y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y
        if spec.target == _labels_read_whole(heads, spec):
            target, names = _encode_labels(y, f"array {spec.target!r}", where, class_names)
            target = target if keep is None else target[keep]
        else:
            target, names = _encode_labels(y, f"array {spec.target!r}", where, class_names, keep)
    sensitive = pd.DataFrame({s: arrays[s] for s in spec.sensitive_features}) if spec.sensitive_features else None
    return _Raw(inputs, target, names, sensitive, n=n, keep=keep)


def _read_npy(path: Path, fmt: str, spec: DataSpec, where: str, class_names: list[str] | None, seed: int,
              batch_size: int) -> _Raw:
    """A .npy file holds the inputs alone (an OOD set, unlabelled data): read from the file when rows are taken."""
    if spec.sensitive_features or ("target" in spec.model_fields_set and spec.target is not None):
        key = "sensitive_features" if spec.sensitive_features else "target"
        raise InputError(f"{where}: {path} is a .npy file, which holds only the inputs; labels and sensitive features "
                         f"need an .npz (numpy.savez(path, x=..., y=...)). Remove {where}.{key} or save an .npz.")
    try:
        with path.open("rb") as handle:
            try:
                version = npy_format.read_magic(handle)
            except ValueError:
                raise InputError(f"{where}: {path} is not a .npy array. Write it with numpy.save.") from None
            if version not in ((1, 0), (2, 0)):
                raise InputError(f"{where}: {path} has .npy format version {version}; only 1.0 and 2.0 are read. "
                                 "Save it with numpy.save.")
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            try:
                shape, fortran, dtype = read_header(handle)
            except (ValueError, TypeError, SyntaxError) as exc:
                raise InputError(f"{where}: {path} has a broken .npy header ({_brief(exc)}).") from None
            offset = handle.tell()
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{where}: {path} cannot be read ({_brief(exc)}).") from None
    if dtype.hasobject:
        raise InputError(f"{where}: {path} holds pickled objects, which are never loaded; it must hold a plain numeric "
                         "array (numpy.save).")
    _check_input_shape(tuple(shape), dtype, f"the array in {path.name}", where)
    nbytes = math.prod(shape) * dtype.itemsize if all(d >= 0 for d in shape) else -1
    if nbytes < 0 or size != offset + nbytes:
        raise InputError(f"{where}: {path} claims shape {tuple(shape)} of {dtype} ({format_size(max(nbytes, 0))}) but "
                         f"holds {format_size(max(size - offset, 0))} of data; the file is corrupt or truncated.")
    n = shape[0]
    keep = _subset(n, spec.max_samples, seed)
    k = n if keep is None else len(keep)
    held = model_dtype(tuple(shape), dtype)
    need = min(k, batch_size) * math.prod(shape[1:]) * (dtype.itemsize + held.itemsize) + _selection_bytes(n, k)
    if need > spec.max_bytes:
        raise InputError(
            f"{where}: a batch of {min(k, batch_size):,} rows of {path} (shape {tuple(shape)}, {dtype}) needs about "
            f"{format_size(need)} of memory, over the budget of {format_size(spec.max_bytes)}. Set a smaller batch_size, "
            f"or raise {where}.max_bytes (e.g. --set {where}.max_bytes={math.ceil(need / 2**30)}GiB).")
    kind = MappedRows if fortran and len(shape) > 1 else FileRows
    rows = kind(path, offset, tuple(shape), dtype, held)
    return _Raw(rows if keep is None else rows.subset(keep), n=n, keep=keep)


@dataclass(frozen=True)
class _NpyHead:
    """One array of an npz, from its .npy header; no data read yet."""

    name: str  # the array's name, as the config gives it
    entry: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    header_bytes: int  # bytes of the .npy header before the data

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize


def _npy_header(zf: zipfile.ZipFile, entry: zipfile.ZipInfo, name: str, path: Path, where: str) -> _NpyHead:
    """Read and check one member's .npy header against its zip entry; InputError for a hostile or broken one."""
    what = f"array {name!r} in {path}"
    if entry.compress_type == zipfile.ZIP_DEFLATED and entry.file_size > _DEFLATE_MAX_RATIO * entry.compress_size + (1 << 16):
        raise InputError(f"{where}: {what} claims {format_size(entry.file_size)} from {format_size(entry.compress_size)} "
                         "compressed, more than deflate can produce; the file is corrupt or hostile.")
    with zf.open(entry) as member:
        try:
            version = npy_format.read_magic(member)
        except ValueError:
            msg = "is not a .npy array; an npz must hold numeric arrays written by numpy.savez"
            raise InputError(f"{where}: member {entry.filename!r} of {path} {msg}.") from None
        if version not in ((1, 0), (2, 0)):
            raise InputError(f"{where}: {what} has .npy format version {version}; only 1.0 and 2.0 are read. Save it with numpy.savez.")
        try:
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran, dtype = read_header(member)
        except (ValueError, TypeError, SyntaxError) as exc:
            raise InputError(f"{where}: {what} has a broken .npy header ({_brief(exc)}).") from None
        header_bytes = member.tell()
    if dtype.hasobject:
        msg = "holds pickled objects, which are never loaded; it must hold plain numeric arrays (numpy.savez)."
        raise InputError(f"{where}: {path} {msg}")
    nbytes = math.prod(shape) * dtype.itemsize if all(d >= 0 for d in shape) else -1
    if nbytes < 0 or entry.file_size != header_bytes + nbytes or (
            entry.compress_type == zipfile.ZIP_STORED and entry.compress_size != entry.file_size):
        claim = f"claims shape {shape} of {dtype} ({format_size(max(nbytes, 0))})"
        raise InputError(f"{where}: {what} {claim} but its zip entry holds {format_size(entry.file_size - header_bytes)}; "
                         "the file is corrupt or was not written by numpy.savez.")
    return _NpyHead(name, entry, tuple(shape), dtype, bool(fortran), header_bytes)


def _verify_crc(zf: zipfile.ZipFile, entry: zipfile.ZipInfo) -> None:
    """Read a member through zipfile in chunks, which raises BadZipFile on a CRC-32 mismatch; nothing is kept."""
    with zf.open(entry) as member:
        while member.read(_READ_CHUNK):
            pass


def _stays_in_file(head: _NpyHead) -> bool:
    """Numeric inputs stored uncompressed are read from the file when rows are taken, never held."""
    return head.entry.compress_type == zipfile.ZIP_STORED and not (len(head.shape) == 1 and head.dtype.kind in "US")


def _labels_read_whole(heads: dict[str, _NpyHead], spec: DataSpec) -> str | None:
    """String labels are read whole: they define the class names from every row, subset or not."""
    return spec.target if spec.target and heads[spec.target].dtype.kind in "US" else None


def _check_npz_shapes(heads: dict[str, _NpyHead], spec: DataSpec, x_name: str, where: str) -> None:
    """The shape rules of the inputs, labels and sensitive features, from the headers alone."""
    x = heads[x_name]
    if not (len(x.shape) == 1 and x.dtype.kind in "US"):
        _check_input_shape(x.shape, x.dtype, f"array {x_name!r}", where)
    n = x.shape[0]
    if spec.target:
        shape = heads[spec.target].shape
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            msg = "targets must be 1-D class indices or names (y.argmax(1) for one-hot)."
            raise InputError(f"{where}: array {spec.target!r} has shape {shape}; {msg}")
        _check_length(shape[0], n, f"target array {spec.target!r}", x_name, where)
    for s in spec.sensitive_features:
        shape = heads[s].shape
        if len(shape) != 1:
            raise InputError(f"{where}: sensitive feature array {s!r} has shape {shape}; it must be 1-D.")
        _check_length(shape[0], n, f"sensitive feature array {s!r}", x_name, where)


def _check_npz_budget(heads: dict[str, _NpyHead], spec: DataSpec, x_name: str, n: int, keep: np.ndarray | None,
                      path: Path, where: str, batch_size: int) -> None:
    """Refuse, before reading any data, a load whose memory would exceed ``spec.max_bytes``: what is held (the
    kept rows of compressed inputs in their stored dtype, labels, sensitive features) plus one batch of
    model-ready inputs. Inputs stored uncompressed are not held: only their batch counts."""
    k = n if keep is None else len(keep)
    costs: dict[str, int] = {}
    for name, head in heads.items():
        whole = name == _labels_read_whole(heads, spec) or (head.fortran and len(head.shape) > 1)  # then subset
        rows, elems = (n if whole else k), math.prod(head.shape[1:])
        if name == x_name and head.dtype.kind in "US":
            per_row = elems * head.dtype.itemsize + 64  # numpy strings, then one Python str per row
        elif name == x_name:  # the stored rows (unless they stay in the file), then one model-ready batch
            batch = min(k, batch_size) * elems * (head.dtype.itemsize + model_dtype(head.shape, head.dtype).itemsize)
            costs[name] = batch + (0 if _stays_in_file(head) else rows * elems * head.dtype.itemsize)
            continue
        elif name == spec.target:
            per_row = elems * head.dtype.itemsize + 32  # the labels, then int64 indices and the checks' masks
        else:
            per_row = 2 * elems * head.dtype.itemsize  # the array, then its DataFrame column
        costs[name] = rows * per_row
    need = sum(costs.values()) + _selection_bytes(n, k)
    if need > spec.max_bytes:
        name = max(costs, key=costs.__getitem__)
        head = heads[name]
        raise InputError(
            f"{where}: loading {k:,} of {n:,} rows of {path} needs about {format_size(need)} of memory "
            f"(array {name!r}: shape {head.shape}, {head.dtype}), over the budget of {format_size(spec.max_bytes)}. "
            f"Set {where}.max_samples to load fewer rows, save it uncompressed (numpy.savez: its inputs are then read "
            f"a batch at a time), or raise {where}.max_bytes (e.g. --set {where}.max_bytes={math.ceil(need / 2**30)}GiB).")


def _read_member(zf: zipfile.ZipFile, path: Path, head: _NpyHead, keep: np.ndarray | None) -> np.ndarray:
    """The rows ``keep`` (sorted; None: all) of one array. Memory: the kept rows plus one chunk of the stream."""
    if head.fortran and len(head.shape) > 1:  # rows are not contiguous: read it whole
        flat = np.empty(math.prod(head.shape), head.dtype)
        with zf.open(head.entry) as member:
            _read_exact(member, head.header_bytes)
            _fill(member, flat)
        whole = flat.reshape(head.shape, order="F")
        return whole if keep is None else whole[keep]
    row_shape = head.shape[1:]
    if keep is None:
        out = np.empty(head.shape, head.dtype)
        with zf.open(head.entry) as member:
            _read_exact(member, head.header_bytes)
            _fill(member, out)
        return out
    out = np.empty((len(keep), *row_shape), head.dtype)
    if len(keep) == 0 or head.row_bytes == 0:
        return out
    if head.entry.compress_type == zipfile.ZIP_STORED:  # uncompressed: read the kept rows in place
        offset = _stored_data_offset(path, head.entry) + head.header_bytes
        mapped = np.memmap(path, dtype=head.dtype, mode="r", offset=offset, shape=head.shape)
        out[...] = mapped[keep]
        del mapped
        return out
    chunk_rows = max(1, _READ_CHUNK // head.row_bytes)
    with zf.open(head.entry) as member:
        _read_exact(member, head.header_bytes)
        end = int(keep[-1]) + 1
        for start in range(0, end, chunk_rows):
            stop = min(start + chunk_rows, end)
            lo, hi = np.searchsorted(keep, [start, stop])
            if lo == hi:
                _skip(member, (stop - start) * head.row_bytes)
                continue
            block = np.frombuffer(_read_exact(member, (stop - start) * head.row_bytes), head.dtype)
            out[lo:hi] = block.reshape(stop - start, *row_shape)[keep[lo:hi] - start]
    return out


def _read_exact(stream: io.BufferedIOBase, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"the data ends after {len(data)} of {size} bytes; the file is truncated")
    return data


def _skip(stream: io.BufferedIOBase, size: int) -> None:
    while size > 0:
        size -= len(_read_exact(stream, min(size, _READ_CHUNK)))


def _fill(stream: io.BufferedIOBase, out: np.ndarray) -> None:
    """Read ``out.nbytes`` bytes into the C-contiguous ``out``, in chunks."""
    view = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(b"")
    for pos in range(0, len(view), _READ_CHUNK):
        chunk = _read_exact(stream, min(_READ_CHUNK, len(view) - pos))
        view[pos:pos + len(chunk)] = chunk


def _stored_data_offset(path: Path, entry: zipfile.ZipInfo) -> int:
    """Where an uncompressed zip entry's bytes start: after its local header (30 bytes, name, extra field)."""
    with path.open("rb") as handle:
        handle.seek(entry.header_offset)
        local = handle.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header of {entry.filename!r}")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return entry.header_offset + 30 + name_len + extra_len


def _subset(n: int, max_samples: int | None, seed: int) -> np.ndarray | None:
    """The sorted original indices of the seeded random subset, or None to keep every row."""
    if max_samples is None or max_samples >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False)).astype(np.int64)


def _selection_bytes(n: int, k: int) -> int:
    """Memory of ``_subset``: numpy's choice without replacement shuffles an index of all n rows when k > n // 50
    (n > 10,000), else it samples k indices with a hash set."""
    return 8 * n if k < n and n > 10_000 and k > n // 50 else 32 * k


def _read_table(path: Path, fmt: str, spec: DataSpec, where: str, class_names: list[str] | None, seed: int,
                batch_size: int) -> _Raw:
    """CSV is parsed whole (features held as float32); Parquet is read by row group (see ``_read_parquet``)."""
    if fmt == "parquet":
        return _read_parquet(path, spec, where, class_names, batch_size)
    try:
        _check_csv_budget(path, spec, where)
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"{where}: {path} is empty; the audit needs at least one sample.") from None
    except (ValueError, OSError) as exc:
        raise _unreadable_table(path, fmt, where, exc) from None
    if len(frame) == 0:
        raise _no_samples(path, where)
    frame.columns = [str(c) for c in frame.columns]
    columns = list(frame.columns)
    _require(spec, columns, where)
    target, names, sensitive = _table_labels(frame, spec, where, class_names)
    if spec.text_column:
        return _Raw(_text_inputs(frame[spec.text_column], spec.text_column, where), target, names, sensitive)
    features = _feature_columns(spec, columns)
    return _Raw(ArrayRows(_table_inputs(frame, features, where)), target, names, sensitive, features)


def _read_parquet(path: Path, spec: DataSpec, where: str, class_names: list[str] | None, batch_size: int) -> _Raw:
    """Label, sensitive and text columns are read whole; feature columns stay in the file and are read one row
    group at a time when rows are taken (``audit.rows.ParquetRows``)."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        meta, schema = parquet.metadata, parquet.schema_arrow
        columns = [str(c) for c in schema.names]
        _require(spec, columns, where)
        features = [] if spec.text_column else _feature_columns(spec, columns)
        whole = list(dict.fromkeys(c for c in (spec.target, *spec.sensitive_features, spec.text_column) if c))
        _check_parquet_budget(meta, columns, whole, features, spec, path, where, batch_size)
        if meta.num_rows == 0:
            raise _no_samples(path, where)
        frame = pd.read_parquet(path, engine="pyarrow", columns=whole) if whole else pd.DataFrame(index=range(meta.num_rows))
        dtypes = schema.empty_table().to_pandas()
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise _unreadable_table(path, "parquet", where, exc) from None
    frame.columns = [str(c) for c in frame.columns]
    dtypes.columns = [str(c) for c in dtypes.columns]
    target, names, sensitive = _table_labels(frame, spec, where, class_names)
    if spec.text_column:
        return _Raw(_text_inputs(frame[spec.text_column], spec.text_column, where), target, names, sensitive)
    _table_inputs(dtypes, features, where)  # the rules on feature columns, from the schema's (empty) columns
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    return _Raw(ParquetRows(path, features, groups), target, names, sensitive, features)


def _table_labels(frame: pd.DataFrame, spec: DataSpec, where: str, class_names: list[str] | None,
                  ) -> tuple[np.ndarray | None, list[str] | None, pd.DataFrame | None]:
    target, names = None, None
    if spec.target:
        target, names = _encode_labels(frame[spec.target], f"target column {spec.target!r}", where, class_names)
    sensitive = frame[spec.sensitive_features].reset_index(drop=True) if spec.sensitive_features else None
    return target, names, sensitive


def _feature_columns(spec: DataSpec, columns: list[str]) -> list[str]:
    if isinstance(spec.features, (list, str)):
        return [spec.features] if isinstance(spec.features, str) else list(spec.features)
    used = {spec.target, *spec.sensitive_features}
    return [c for c in columns if c not in used]


def _unreadable_table(path: Path, fmt: str, where: str, exc: BaseException) -> InputError:
    msg = f"cannot be read as {fmt.upper()} ({_brief(exc)}). Check the file or set {where}.format."
    return InputError(f"{where}: {path} {msg}")


def _check_csv_budget(path: Path, spec: DataSpec, where: str) -> None:
    """A CSV is parsed whole (max_samples or not): refuse one whose text exceeds ``spec.max_bytes``."""
    need = path.stat().st_size
    if need > spec.max_bytes:
        raise InputError(
            f"{where}: {path} needs about {format_size(need)} of memory of CSV text, over the budget of "
            f"{format_size(spec.max_bytes)}; a CSV is read whole, even with max_samples. Save it as Parquet (read by "
            f"row group), use a smaller file, or raise {where}.max_bytes (e.g. --set "
            f"{where}.max_bytes={math.ceil(need / 2**30)}GiB).")


def _check_parquet_budget(meta: Any, columns: list[str], whole: list[str], features: list[str], spec: DataSpec,
                          path: Path, where: str, batch_size: int) -> None:
    """From the metadata, before any data is read: the columns read whole, plus the largest row group of the
    feature columns (as a DataFrame, then float32)."""
    position = {c: j for j, c in enumerate(columns)}
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    decoded = sum(g.column(position[c]).total_uncompressed_size for g in groups for c in whole if c in position)
    need = max(decoded, 8 * meta.num_rows * len(whole))
    need += max((g.num_rows for g in groups), default=0) * len(features) * (8 + 4)
    if need > spec.max_bytes:
        what = f"{meta.num_rows:,} rows of {meta.num_columns:,} columns"
        raise InputError(
            f"{where}: {path} needs about {format_size(need)} of memory by its metadata ({what}: label, sensitive and "
            f"text columns whole, feature columns one row group at a time), over the budget of "
            f"{format_size(spec.max_bytes)}. Write it in smaller row groups, or raise {where}.max_bytes "
            f"(e.g. --set {where}.max_bytes={math.ceil(need / 2**30)}GiB).")


def _read_image_folder(path: Path, fmt: str, spec: DataSpec, where: str, class_names: list[str] | None, seed: int,
                       batch_size: int) -> _Raw:
    folders = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[Path] = []
    labels: list[str] = []
    for folder in folders:
        found = sorted(f for f in (path / folder).rglob("*") if _is_image(f))
        files += found
        labels += [folder] * len(found)
    if not files:
        suffixes = ", ".join(sorted(_IMAGE_SUFFIXES))
        raise InputError(f"{where}: {path} holds no images; it needs one subfolder per class holding {suffixes} files.")
    # Without the model's class names, every subfolder is a class (sorted), even an empty one.
    target, names = _encode_labels(pd.Series(labels), "subfolder names", where, class_names or folders)
    sources = [f.relative_to(path).as_posix() for f in files]
    return _Raw(_Images(sources, FileImages(path, sources)), target, names)


def _read_hf(path: Path, fmt: str, spec: DataSpec, where: str, class_names: list[str] | None, seed: int,
             batch_size: int) -> _Raw:
    """Label, sensitive, text and tabular feature columns are read whole; an image or array input column is read
    by row index when rows are taken (the Arrow files stay memory-mapped)."""
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        raise InputError(f"{where}: {path} cannot be read as a saved Hugging Face dataset ({_brief(exc)}).") from None
    if isinstance(data, datasets.DatasetDict):
        splits = list(data)
        split = spec.split or ("test" if "test" in data else splits[0] if len(splits) == 1 else None)
        if split is None:
            raise InputError(f"{where}: {path} holds the splits {splits} and none is 'test'; choose one with {where}.split.")
        if split not in data:
            raise _missing(where, "split", split, splits, "split")
        data = data[split]
    if len(data) == 0:
        raise _no_samples(path, where)
    columns = list(data.column_names)
    if spec.features is None and spec.text_column is None:
        col = next((c for c in _HF_INPUT_COLUMNS if c in columns), None)
        if col is None:
            tried = ", ".join(_HF_INPUT_COLUMNS)
            raise InputError(f"{where}: no input column (tried {tried}) among {_short(columns)}. Set {where}.features.")
        spec = spec.model_copy(update={"features": col})
    _require(spec, columns, where)
    _check_hf_budget(data, spec, path, where)

    def series(column: str) -> pd.Series:
        return data.select_columns([column]).to_pandas()[column]

    target, names = None, None
    if spec.target:
        feature = data.features[spec.target]
        if isinstance(feature, datasets.ClassLabel):
            y = series(spec.target)
            target, _ = _encode_labels(y.where(y >= 0), f"target column {spec.target!r}", where, None)
            names = list(feature.names)
            if class_names is not None and set(names) <= set(class_names):
                lookup = {c: i for i, c in enumerate(class_names)}
                target = np.array([lookup[c] for c in names], dtype=np.int64)[target]
                names = list(class_names)
        else:
            target, names = _encode_labels(series(spec.target), f"target column {spec.target!r}", where, class_names)
    sensitive = None
    if spec.sensitive_features:
        sensitive = data.select_columns(spec.sensitive_features).to_pandas().reset_index(drop=True)
    if isinstance(spec.features, list):
        frame = data.select_columns(spec.features).to_pandas()
        return _Raw(ArrayRows(_table_inputs(frame, spec.features, where)), target, names, sensitive, list(spec.features))
    col = spec.text_column or str(spec.features)
    feature = data.features[col]
    if spec.text_column or (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        return _Raw(_text_inputs(series(col), col, where), target, names, sensitive)
    if isinstance(feature, datasets.Image):
        undecoded = data.select_columns([col]).cast_column(col, datasets.Image(decode=False))
        sources = [f"row {i} of column {col!r}" for i in range(len(data))]
        return _Raw(_Images(sources, DatasetImages(undecoded, col)), target, names, sensitive)
    numeric = data.select_columns([col]).with_format("numpy")
    first = np.asarray(numeric[[0]][col])
    shape = (len(data), *first.shape[1:])
    _check_input_shape(shape, first.dtype, f"column {col!r}", where)
    rows = DatasetRows(numeric, col, shape, first.dtype, model_dtype(shape, first.dtype), _HFRowsFailure(where))
    return _Raw(rows, target, names, sensitive)


class _HFRowsFailure:
    """The InputError for rows of a saved dataset's array column that do not match its first row (picklable)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __call__(self, what: str) -> InputError:
        return InputError(f"{self.where}: {what}; inputs must be numeric arrays of one shape per sample.")


def _check_hf_budget(data: Any, spec: DataSpec, path: Path, where: str) -> None:
    """The columns read whole (labels, sensitive features, text, tabular features) must fit ``spec.max_bytes``;
    an image or array input column is read by row index and not counted here."""
    whole = [spec.target, *spec.sensitive_features, spec.text_column,
             *(spec.features if isinstance(spec.features, list) else [])]
    names = list(dict.fromkeys(c for c in whole if c))
    need = data.data.table.select(names).nbytes if names else 0
    if need > spec.max_bytes:
        raise InputError(
            f"{where}: {path} holds {format_size(need)} in the columns read whole ({_short(names)}; {len(data):,} rows), "
            f"over the memory budget of {format_size(spec.max_bytes)}. Save a smaller subset, or raise {where}.max_bytes "
            f"(e.g. --set {where}.max_bytes={math.ceil(need / 2**30)}GiB).")


# --------------------------------------------------------------------------------------- helpers


def _encode_labels(
    values: pd.Series | np.ndarray, source: str, where: str, class_names: list[str] | None,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str] | None]:
    """Labels to int64 class indices; the class names they define (string labels), else None.

    ``keep``: the original row of each label, when only some rows were read (for messages).
    """
    labels = pd.Series(values).reset_index(drop=True)
    missing = labels.isna().to_numpy()
    if missing.any():
        fix = f"Drop those rows, or set {where}.target: null for unlabelled data."
        raise InputError(f"{where}: {source} has missing labels in {_rows(missing, keep)}. {fix}")
    if pd.api.types.is_numeric_dtype(labels) and not isinstance(labels.dtype, pd.CategoricalDtype):
        y = labels.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(y) | (y != np.round(y)) | (y < 0)
        if bad.any():
            fix = "numeric labels must be class indices 0, 1, 2, ... Fix the labels or store class names as strings."
            raise InputError(f"{where}: {source} holds {y[bad][0]:g} in {_rows(bad, keep)}; {fix}")
        index = y.astype(np.int64)
        if class_names is not None and index.max() >= len(class_names):
            msg = f"{source} holds label {int(index.max())} but the model has {len(class_names)} classes {_short(class_names)}"
            raise InputError(f"{where}: {msg}. Fix the labels or set model.class_names.")
        return index, None
    text = labels.astype(str).tolist()
    names = sorted(set(text)) if class_names is None else list(class_names)
    unknown = sorted(set(text) - set(names))
    if unknown:
        msg = f"labels {_short(unknown)} in {source} are not among the model's classes {_short(names)}"
        raise InputError(f"{where}: {msg}. Fix the {source} or set model.class_names.")
    lookup = {c: i for i, c in enumerate(names)}
    return np.fromiter((lookup[t] for t in text), dtype=np.int64, count=len(text)), names


def _image_rows(images: _Images, rows: np.ndarray, spec: DataSpec, where: str, batch_size: int) -> ImageRows:
    """Images decoded when taken, as float32 (N, C, H, W) in [0, 1]; the headers of all are checked here, and one
    batch of the kept ones (``rows``) must fit the memory budget."""
    heads = [_with_image(images, i, where, lambda im: (im.mode, im.size)) for i in range(len(images))]
    for i, (_, (w, h)) in enumerate(heads):
        if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
            raise _image_bomb(images.sources[i], w, h, where)
    modes, sizes = {m for m, _ in heads}, [s for _, s in heads]
    mode = spec.image_mode if spec.image_mode != "auto" else ("L" if modes <= _GRAY_MODES else "RGB")
    if spec.image_size is not None:
        height, width = spec.image_size
    elif len(set(sizes)) > 1:
        other = next(i for i, s in enumerate(sizes) if s != sizes[0])
        (w0, h0), (w1, h1) = sizes[0], sizes[other]
        sizes_s = f"{h0}x{w0} for {images.sources[0]}, {h1}x{w1} for {images.sources[other]}"
        raise InputError(f"{where}: images differ in size (height x width {sizes_s}). Set {where}.image_size: [height, width].")
    else:
        width, height = sizes[0]
    m = min(len(rows), batch_size)
    need = 4 * m * (1 if mode == "L" else 3) * height * width
    if need > spec.max_bytes:
        raise InputError(
            f"{where}: a batch of {m:,} images of {height}x{width} needs {format_size(need)} of memory as float32, over "
            f"the budget of {format_size(spec.max_bytes)}. Set a smaller {where}.image_size or batch_size, or raise "
            f"{where}.max_bytes (e.g. --set {where}.max_bytes={math.ceil(need / 2**30)}GiB).")
    return ImageRows(images.open, len(images), mode, height, width, _ImageFailure(where, images.sources))


class _ImageFailure:
    """The InputError for an image that cannot be decoded when its batch is read (picklable, unlike a closure)."""

    def __init__(self, where: str, sources: list[str]) -> None:
        self.where, self.sources = where, sources

    def __call__(self, i: int, exc: BaseException) -> InputError:
        return InputError(f"{self.where}: image {self.sources[i]} cannot be read ({_brief(exc)}). Replace or remove it.")


def _image_bomb(source: str, width: int, height: int, where: str) -> InputError:
    limit = Image.MAX_IMAGE_PIXELS
    return InputError(f"{where}: image {source} is {width}x{height} = {width * height:,} pixels, over the limit of {limit:,} "
                      "(Pillow's decompression-bomb guard, PIL.Image.MAX_IMAGE_PIXELS). Resize it or remove it.")


def _with_image(images: _Images, i: int, where: str, fn: Callable[[Image.Image], Any]) -> Any:
    try:
        with images.open(i) as im:
            return fn(im)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # Pillow refuses over 2x MAX_IMAGE_PIXELS
        raise InputError(f"{where}: image {images.sources[i]} cannot be read ({_brief(exc)}). Replace or remove it.") from None


def _array_rows(x: np.ndarray, source: str, where: str) -> ArrayRows:
    """Numeric inputs held in their stored dtype, samples first; taken as int64 token ids when 2-D integer,
    else float32."""
    _check_input_shape(x.shape, x.dtype, source, where)
    return ArrayRows(x, model_dtype(x.shape, x.dtype))


def _check_input_shape(shape: tuple[int, ...], dtype: np.dtype, source: str, where: str) -> None:
    if dtype.kind not in "biuf":
        raise InputError(f"{where}: {source} has dtype {dtype}; inputs must be numeric arrays of one shape per sample.")
    if len(shape) < 2:
        msg = "inputs need at least 2 dimensions, samples first: (N, F) or (N, C, H, W). Reshape it, e.g. x.reshape(-1, 1)."
        raise InputError(f"{where}: {source} has shape {shape}; {msg}")


def _table_inputs(frame: pd.DataFrame, features: list[str], where: str) -> np.ndarray:
    if not features:
        raise InputError(f"{where}: no feature columns left besides the target and sensitive columns. Set {where}.features.")
    for col in features:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            fix = f"List it in {where}.sensitive_features, encode it as numbers, or leave it out of {where}.features."
            raise InputError(f"{where}: feature column {col!r} is not numeric (dtype {frame[col].dtype}). {fix}")
    return frame[features].to_numpy(dtype=np.float32, na_value=np.nan)


def _text_inputs(column: pd.Series, name: str, where: str) -> list[str]:
    missing = column.isna().to_numpy()
    if missing.any():
        raise InputError(f"{where}: text column {name!r} has missing values in {_rows(missing)}. Drop or fill those rows.")
    return [str(v) for v in column.tolist()]


def _check_finite(x: Rows, where: str, keep: np.ndarray | None = None) -> None:
    """The audited rows (``keep``: their original indices) hold no NaN or inf; float rows are read once, streamed."""
    bad = x.nonfinite()
    if bad.any():
        raise InputError(f"{where}: inputs hold NaN or inf in {_rows(bad, keep)}. Drop or impute those rows before the audit.")


def _infer_kind(x: Rows) -> InputKind | None:
    kinds: dict[int, InputKind] = {4: "image", 3: "sequence", 2: "sequence" if x.dtype.kind in "iu" else "tabular"}
    return kinds.get(x.ndim)


def _require(spec: DataSpec, columns: list[str], where: str) -> None:
    """Every column the spec names must exist."""
    named: list[tuple[str, str]] = [(c, "sensitive_features") for c in spec.sensitive_features]
    if spec.target:
        named.insert(0, (spec.target, "target"))
    if spec.text_column:
        named.append((spec.text_column, "text_column"))
    elif spec.features is not None:
        named += [(c, "features") for c in ([spec.features] if isinstance(spec.features, str) else spec.features)]
    for column, key in named:
        if column not in columns:
            raise _missing(where, "column", column, columns, key)


def _check_length(got: int, n: int, what: str, x_name: str, where: str) -> None:
    if got != n:
        raise InputError(f"{where}: {what} has {got} entries but inputs {x_name!r} have {n} samples; give one per sample.")


def _missing(where: str, what: str, wanted: str, options: list[str], key: str) -> InputError:
    close = difflib.get_close_matches(wanted, options, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return InputError(f"{where}: no {what} {wanted!r}; found {_short(options)}.{hint} Fix {where}.{key}.")


def _no_samples(path: Path, where: str) -> InputError:
    return InputError(f"{where}: {path} holds 0 samples; the audit needs at least one.")


def _rows(mask: np.ndarray, keep: np.ndarray | None = None) -> str:
    """``mask`` marks bad rows; ``keep``, when given, maps them to rows of the file."""
    first = int(np.flatnonzero(mask)[0])
    first = first if keep is None else int(keep[first])
    return f"{int(mask.sum())} row(s) (first: row {first}, counting from 0)"


def _short(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(str(i)) for i in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


def _brief(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in _IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")
