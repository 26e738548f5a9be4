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
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from audit.config import DataSpec, InputKind
from audit.errors import InputError

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_HF_INPUT_COLUMNS = ("image", "img", "pixel_values", "x", "text")
_GRAY_MODES = frozenset({"1", "L", "LA", "I;16", "I;16B", "I;16L"})
_CHUNK = 1 << 20
_SUPPORTED = "supported: .npz, .csv, .parquet/.pq, an image folder (one subfolder per class) or a save_to_disk folder"


@dataclass(frozen=True, eq=False)
class AuditDataset:
    """One loaded data set, ready for the checks; fields are described where they are declared."""

    name: str  # the role given by the caller: "eval", "reference" or "ood"
    inputs: np.ndarray | list[str]  # float32 (N,C,H,W) / (N,F) / (N,T,F); int64 (N,T) token ids; list[str] text
    target: np.ndarray | None  # int64 class indices of shape (N,); None when unlabelled
    class_names: list[str] | None  # label names in index order when the data defines them, else None
    sensitive_features: pd.DataFrame | None  # one column per attribute, N rows, index 0..N-1
    feature_names: list[str] | None  # tabular column names in input order
    input_kind: InputKind | None  # what the data looks like; None if ambiguous
    path: str  # the source path as given
    format: str  # the resolved format: npz, csv, parquet, image_folder or hf_dataset
    sha256: str  # of the file; for a folder, of the sorted (relative path, file sha256) list
    indices: np.ndarray | None = None  # original row indices kept by max_samples, else None

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class _Images:
    """Images not decoded yet: a name per image (for messages) and a function opening image i."""

    sources: list[str]
    open: Callable[[int], Image.Image]

    def __len__(self) -> int:
        return len(self.sources)


@dataclass
class _Raw:
    """What a format reader returns, before validation and subsampling."""

    inputs: np.ndarray | list[str] | _Images
    target: np.ndarray | None = None
    class_names: list[str] | None = None
    sensitive: pd.DataFrame | None = None
    feature_names: list[str] | None = None


# ------------------------------------------------------------------------------------ public API


def load_dataset(spec: DataSpec, name: str, *, class_names: list[str] | None = None, seed: int = 0) -> AuditDataset:
    """Load, validate and optionally subsample one data set.

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

    Returns
    -------
    AuditDataset

    Raises
    ------
    InputError
        Missing path, unreadable file, missing column or array, invalid labels or inputs, no samples.
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
    readers = {"npz": _read_npz, "csv": _read_table, "parquet": _read_table, "image_folder": _read_image_folder}
    raw = readers.get(fmt, _read_hf)(path, fmt, spec, where, class_names)

    n = len(raw.inputs)
    if n == 0:
        raise _no_samples(path, where)
    if isinstance(raw.inputs, np.ndarray):
        _check_finite(raw.inputs, where)
    keep = None
    if spec.max_samples is not None and spec.max_samples < n:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=spec.max_samples, replace=False)).astype(np.int64)
    rows = np.arange(n) if keep is None else keep

    inputs: np.ndarray | list[str]
    kind: InputKind | None
    if isinstance(raw.inputs, _Images):
        inputs, kind = _decode_images(raw.inputs, rows, spec, where), "image"
    elif isinstance(raw.inputs, list):
        inputs, kind = [raw.inputs[i] for i in rows], "text"
    else:
        inputs = raw.inputs if keep is None else raw.inputs[keep]
        kind = "tabular" if raw.feature_names is not None else _infer_kind(raw.inputs)
    target = raw.target if raw.target is None or keep is None else raw.target[keep]
    sensitive = raw.sensitive
    if sensitive is not None and keep is not None:
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
    formats = {".npz": "npz", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
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


def _read_npz(path: Path, fmt: str, spec: DataSpec, where: str, class_names: list[str] | None) -> _Raw:
    if isinstance(spec.features, list):
        raise InputError(f"{where}: for .npz, features is the name of one array (e.g. 'x'), not a list. Fix {where}.features.")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{where}: {path} is not a valid .npz file (not a zip archive). Write it with numpy.savez.")
    x_name = spec.text_column or spec.features or "x"
    wanted = [(x_name, "text_column" if spec.text_column else "features")] + ([(spec.target, "target")] if spec.target else [])
    wanted += [(s, "sensitive_features") for s in spec.sensitive_features]
    try:
        with np.load(path, allow_pickle=False) as npz:
            for array, key in wanted:
                if array not in npz.files:
                    raise _missing(where, "array", array, list(npz.files), key)
            arrays = {array: npz[array] for array, _ in wanted}
    except ValueError as exc:
        if "pickle" in str(exc):
            msg = "holds pickled objects, which are never loaded; it must hold plain numeric arrays (numpy.savez)."
            raise InputError(f"{where}: {path} {msg}") from None
        raise InputError(f"{where}: {path} is not a valid .npz file ({_brief(exc)}).") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{where}: {path} is not a valid .npz file ({_brief(exc)}).") from None

    x = arrays[x_name]
    text = x.ndim == 1 and x.dtype.kind in "US"  # a 1-D array of strings is raw text
    inputs = [str(v) for v in x.tolist()] if text else _array_inputs(x, f"array {x_name!r}", where)
    n = len(inputs)
    target, names = None, None
    if spec.target:
        y = arrays[spec.target]
        y = y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y
        if y.ndim != 1:
            msg = "targets must be 1-D class indices or names (y.argmax(1) for one-hot)."
            raise InputError(f"{where}: array {spec.target!r} has shape {y.shape}; {msg}")
        _check_length(len(y), n, f"target array {spec.target!r}", x_name, where)
        target, names = _encode_labels(y, f"array {spec.target!r}", where, class_names)
    sensitive = None
    if spec.sensitive_features:
        for s in spec.sensitive_features:
            if arrays[s].ndim != 1:
                raise InputError(f"{where}: sensitive feature array {s!r} has shape {arrays[s].shape}; it must be 1-D.")
            _check_length(len(arrays[s]), n, f"sensitive feature array {s!r}", x_name, where)
        sensitive = pd.DataFrame({s: arrays[s] for s in spec.sensitive_features})
    return _Raw(inputs, target, names, sensitive)


def _read_table(path: Path, fmt: str, spec: DataSpec, where: str, class_names: list[str] | None) -> _Raw:
    try:
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path, engine="pyarrow")
    except pd.errors.EmptyDataError:
        raise InputError(f"{where}: {path} is empty; the audit needs at least one sample.") from None
    except (ValueError, OSError, pa.ArrowException) as exc:
        msg = f"cannot be read as {fmt.upper()} ({_brief(exc)}). Check the file or set {where}.format."
        raise InputError(f"{where}: {path} {msg}") from None
    if len(frame) == 0:
        raise _no_samples(path, where)
    frame.columns = [str(c) for c in frame.columns]
    columns = list(frame.columns)
    _require(spec, columns, where)
    target, names = None, None
    if spec.target:
        target, names = _encode_labels(frame[spec.target], f"target column {spec.target!r}", where, class_names)
    sensitive = frame[spec.sensitive_features].reset_index(drop=True) if spec.sensitive_features else None
    if spec.text_column:
        return _Raw(_text_inputs(frame[spec.text_column], spec.text_column, where), target, names, sensitive)
    if isinstance(spec.features, (list, str)):
        features = [spec.features] if isinstance(spec.features, str) else list(spec.features)
    else:
        used = {spec.target, *spec.sensitive_features}
        features = [c for c in columns if c not in used]
    return _Raw(_table_inputs(frame, features, where), target, names, sensitive, features)


def _read_image_folder(path: Path, fmt: str, spec: DataSpec, where: str, class_names: list[str] | None) -> _Raw:
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
    return _Raw(_Images(sources, lambda i: Image.open(files[i])), target, names)


def _read_hf(path: Path, fmt: str, spec: DataSpec, where: str, class_names: list[str] | None) -> _Raw:
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
        return _Raw(_table_inputs(frame, spec.features, where), target, names, sensitive, list(spec.features))
    col = spec.text_column or str(spec.features)
    feature = data.features[col]
    if spec.text_column or (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        return _Raw(_text_inputs(series(col), col, where), target, names, sensitive)
    if isinstance(feature, datasets.Image):
        items = list(data.cast_column(col, datasets.Image(decode=False))[col])
        sources = [f"row {i} of column {col!r}" for i in range(len(items))]

        def opener(i: int) -> Image.Image:
            return Image.open(io.BytesIO(items[i]["bytes"]) if items[i].get("bytes") else items[i]["path"])

        return _Raw(_Images(sources, opener), target, names, sensitive)
    x = np.asarray(data.select_columns([col]).with_format("numpy")[:][col])
    return _Raw(_array_inputs(x, f"column {col!r}", where), target, names, sensitive)


# --------------------------------------------------------------------------------------- helpers


def _encode_labels(
    values: pd.Series | np.ndarray, source: str, where: str, class_names: list[str] | None
) -> tuple[np.ndarray, list[str] | None]:
    """Labels to int64 class indices; the class names they define (string labels), else None."""
    labels = pd.Series(values).reset_index(drop=True)
    missing = labels.isna().to_numpy()
    if missing.any():
        fix = f"Drop those rows, or set {where}.target: null for unlabelled data."
        raise InputError(f"{where}: {source} has missing labels in {_rows(missing)}. {fix}")
    if pd.api.types.is_numeric_dtype(labels) and not isinstance(labels.dtype, pd.CategoricalDtype):
        y = labels.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(y) | (y != np.round(y)) | (y < 0)
        if bad.any():
            fix = "numeric labels must be class indices 0, 1, 2, ... Fix the labels or store class names as strings."
            raise InputError(f"{where}: {source} holds {y[bad][0]:g} in {_rows(bad)}; {fix}")
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


def _decode_images(images: _Images, rows: np.ndarray, spec: DataSpec, where: str) -> np.ndarray:
    """Decode the kept images to float32 (N, C, H, W) in [0, 1]; the headers of all are checked first."""
    heads = [_with_image(images, i, where, lambda im: (im.mode, im.size)) for i in range(len(images))]
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

    def pixels(im: Image.Image) -> np.ndarray:
        scale = 65535.0 if im.mode.startswith("I;16") else 255.0  # 16-bit grayscale: keep its full range
        im = im.convert("F" if scale > 255 else mode)
        im = im if im.size == (width, height) else im.resize((width, height), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.float32) / scale
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return np.repeat(arr, 3, axis=0) if mode == "RGB" and len(arr) == 1 else arr

    out = np.empty((len(rows), 1 if mode == "L" else 3, height, width), dtype=np.float32)
    for j, i in enumerate(rows):
        out[j] = _with_image(images, int(i), where, pixels)
    return out


def _with_image(images: _Images, i: int, where: str, fn: Callable[[Image.Image], Any]) -> Any:
    try:
        with images.open(i) as im:
            return fn(im)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{where}: image {images.sources[i]} cannot be read ({_brief(exc)}). Replace or remove it.") from None


def _array_inputs(x: np.ndarray, source: str, where: str) -> np.ndarray:
    """Numeric inputs, samples first: int64 token ids when 2-D integer, else float32."""
    if x.dtype.kind not in "biuf":
        raise InputError(f"{where}: {source} has dtype {x.dtype}; inputs must be numeric arrays of one shape per sample.")
    if x.ndim < 2:
        msg = "inputs need at least 2 dimensions, samples first: (N, F) or (N, C, H, W). Reshape it, e.g. x.reshape(-1, 1)."
        raise InputError(f"{where}: {source} has shape {x.shape}; {msg}")
    return x.astype(np.int64 if x.ndim == 2 and x.dtype.kind in "iu" else np.float32, copy=False)


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


def _check_finite(x: np.ndarray, where: str) -> None:
    if x.dtype.kind != "f":
        return
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise InputError(f"{where}: inputs hold NaN or inf in {_rows(bad)}. Drop or impute those rows before the audit.")


def _infer_kind(x: np.ndarray) -> InputKind | None:
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


def _rows(mask: np.ndarray) -> str:
    return f"{int(mask.sum())} row(s) (first: row {int(np.flatnonzero(mask)[0])}, counting from 0)"


def _short(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(str(i)) for i in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


def _brief(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in _IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")
