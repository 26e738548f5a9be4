"""Row sources: a data set's inputs, kept where and how they are stored until rows are taken for the model.

The inputs of every array data set are a :class:`Rows`. It indexes like a numpy array (``len``, ``shape``,
``dtype``, ``ndim``, ``rows[i]``, ``rows[a:b]``, ``rows[index_array]``, ``rows[index, j]``) but holds no
decoded rows: they stay in the file (an uncompressed ``.npy`` or ``.npz`` member, image files, Parquet row
groups, a saved Hugging Face dataset) or in memory in their stored dtype (uint8 stays uint8). Taking rows
reads just those rows and converts them to the model-ready dtype (float32, or int64 token ids), so memory
follows the rows taken at once — a batch, or a check's sample — not the size of the set.

``materialize()`` builds every row as one array. It is the explicit exception, for the few methods that need
the whole set at once (tabular drift and standardisation, training a model on the reference set); their
data are tables or training sets that the memory budget (``data.<set>.max_bytes``) already covers.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: Bytes of model-ready rows decoded per step of a streamed pass (finiteness, value range, materialise).
PASS_BYTES = 16 << 20


class Rows:
    """Row-indexable inputs, decoded only when taken. Subclasses implement ``_read``.

    Parameters
    ----------
    shape : tuple of int
        Model-ready shape, samples first.
    dtype : numpy dtype
        Model-ready dtype of taken rows (float32, int64 token ids, or an in-memory array's own dtype).
    stored_dtype : numpy dtype
        The dtype the rows are stored in.
    """

    format = "array"

    def __init__(self, shape: tuple[int, ...], dtype: Any, stored_dtype: Any) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.stored_dtype = np.dtype(stored_dtype)
        self._range: tuple[float, float] | None = None

    # ------------------------------------------------------------------ the one method a source implements
    def _read(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (sorted, unique, in range, at least one) as a new model-ready array."""
        raise NotImplementedError

    # ------------------------------------------------------------------ numpy-like reading
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def row_nbytes(self) -> int:
        """Bytes of one model-ready row."""
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, rows: Any) -> np.ndarray:
        """Model-ready rows ``rows`` (any order, repeats allowed, negative counts from the end), in that order."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = len(self)
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        rows = np.where(rows < 0, rows + n, rows)
        if rows.size == 0:
            return np.empty((0, *self.shape[1:]), self.dtype)
        if rows.size == 1 or bool(np.all(rows[1:] > rows[:-1])):
            return self._read(rows)
        unique, inverse = np.unique(rows, return_inverse=True)
        return self._read(unique)[inverse]

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple[Any, ...] = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(key, (int, np.integer)):
            out = self.take([int(key)])[0]
            return out[rest] if rest else out
        if isinstance(key, slice):
            rows = np.arange(*key.indices(len(self)))
        else:
            index = np.asarray(key)
            if index.dtype == bool:
                if index.shape != (len(self),):
                    raise IndexError(f"boolean index of shape {index.shape} for {len(self)} rows")
                rows = np.flatnonzero(index)
            elif index.dtype.kind in "iu" and index.ndim <= 1:
                rows = index.reshape(-1)
            else:
                raise IndexError(f"rows are taken by an int, a slice or a 1-D integer or boolean array, not {key!r}")
        out = self.take(rows)
        return out[(slice(None), *rest)] if rest else out

    def batches(self, rows_per_batch: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rows)`` over the whole set; by default ``PASS_BYTES`` of model-ready rows at a time."""
        step = rows_per_batch or max(1, PASS_BYTES // max(self.row_nbytes, 1))
        for start in range(0, len(self), step):
            yield start, self.take(np.arange(start, min(start + step, len(self))))

    def materialize(self) -> np.ndarray:
        """Every row as one model-ready array: the explicit whole-set read (see the module docstring)."""
        if len(self) == 0:
            return np.empty(self.shape, self.dtype)
        return self._read(np.arange(len(self)))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """numpy coercion (``np.asarray(rows)``) reads the whole set; audit code says ``materialize()`` instead."""
        out = self.materialize()
        return out if dtype is None else out.astype(dtype, copy=False)

    def subset(self, rows: np.ndarray) -> Rows:
        """A view of rows ``rows`` (indices into this source, in any order); nothing is read."""
        return _Subset(self, np.asarray(rows, dtype=np.int64))

    def value_range(self) -> tuple[float, float]:
        """Smallest and largest value over every row, streamed once and remembered."""
        if self._range is None:
            lo, hi = math.inf, -math.inf
            for _, block in self.batches():
                if block.size:
                    lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
            self._range = (lo, hi)
        return self._range

    def nonfinite(self) -> np.ndarray:
        """Boolean mask of the rows holding NaN or inf, streamed (all False for integer data)."""
        bad = np.zeros(len(self), dtype=bool)
        if self.dtype.kind != "f" or self.stored_dtype.kind not in "fc":
            return bad
        for start, block in self.batches():
            bad[start:start + len(block)] = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        return bad

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, stored as {self.stored_dtype})"


def as_array(inputs: Rows | np.ndarray) -> np.ndarray:
    """The whole set as one array: an explicit ``materialize()`` for a :class:`Rows`, the array itself otherwise."""
    return inputs.materialize() if isinstance(inputs, Rows) else np.asarray(inputs)


def model_dtype(shape: tuple[int, ...], stored: np.dtype) -> np.dtype:
    """What array inputs become for the model: int64 token ids when 2-D integer, else float32."""
    return np.dtype(np.int64 if len(shape) == 2 and stored.kind in "iu" else np.float32)


class ArrayRows(Rows):
    """Rows held in memory in their stored dtype, converted to ``dtype`` when taken (a copy, always)."""

    def __init__(self, array: np.ndarray, dtype: Any = None) -> None:
        super().__init__(array.shape, array.dtype if dtype is None else dtype, array.dtype)
        self.array = array

    def _read(self, rows: np.ndarray) -> np.ndarray:
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        block = self.array[lo:hi] if hi - lo == len(rows) else self.array[rows]
        return np.array(block, dtype=self.dtype)


class FileRows(Rows):
    """Rows of a C-ordered array stored uncompressed in a file at ``offset`` (a ``.npy`` file, or an ``.npz``
    member written by ``numpy.savez``): each contiguous run of taken rows is one positioned read. Nothing is
    mapped, so resident memory is the rows taken, never the file (a mapping's touched pages count as RSS)."""

    format = "file"

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], stored_dtype: Any, dtype: Any) -> None:
        super().__init__(shape, dtype, stored_dtype)
        self.path, self.offset = str(path), int(offset)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        row_bytes = math.prod(self.shape[1:]) * self.stored_dtype.itemsize
        out = np.empty((len(rows), *self.shape[1:]), self.stored_dtype)
        if row_bytes == 0:
            return out.astype(self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        cuts = np.flatnonzero(np.diff(rows) != 1) + 1
        with open(self.path, "rb", buffering=0) as handle:
            for s, e in zip(np.r_[0, cuts], np.r_[cuts, len(rows)], strict=True):
                handle.seek(self.offset + int(rows[s]) * row_bytes)
                want = (int(e) - int(s)) * row_bytes
                got = handle.readinto(view[int(s) * row_bytes:int(e) * row_bytes])
                while got < want:  # a raw read may return less than asked
                    more = handle.readinto(view[int(s) * row_bytes + got:int(e) * row_bytes])
                    if not more:
                        raise EOFError(f"{self.path} ends inside row {int(rows[s])}; the file is truncated")
                    got += more
        return out if out.dtype == self.dtype else out.astype(self.dtype)


class MappedRows(Rows):
    """Rows of a Fortran-ordered uncompressed array, read through a memory map opened for each take
    (a row is spread over the whole file, so positioned reads do not apply)."""

    format = "memmap"

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], stored_dtype: Any, dtype: Any) -> None:
        super().__init__(shape, dtype, stored_dtype)
        self.path, self.offset = str(path), int(offset)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        mapped = np.memmap(self.path, dtype=self.stored_dtype, mode="r", offset=self.offset, shape=self.shape, order="F")
        try:
            return np.array(mapped[rows], dtype=self.dtype, order="C")
        finally:
            del mapped


class ImageRows(Rows):
    """Images decoded when taken: ``open(i)`` opens image ``i``; each becomes float32 (C, H, W) in [0, 1]
    (16-bit grayscale over 65535), converted to ``mode`` and resized (bilinear) to ``height`` x ``width``.

    ``fail(i, exc)`` builds the exception for an image that cannot be decoded (the loader's InputError).
    """

    format = "images"

    def __init__(self, open: Callable[[int], Image.Image], n: int, mode: str, height: int, width: int,
                 fail: Callable[[int, BaseException], Exception]) -> None:
        super().__init__((n, 1 if mode == "L" else 3, height, width), np.float32, np.uint8)
        self.open, self.mode, self.fail = open, mode, fail

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), np.float32)
        for j, i in enumerate(rows):
            try:
                with self.open(int(i)) as im:
                    out[j] = self.pixels(im)
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise self.fail(int(i), exc) from None
        return out

    def pixels(self, im: Image.Image) -> np.ndarray:
        height, width = self.shape[2:]
        scale = 65535.0 if im.mode.startswith("I;16") else 255.0  # 16-bit grayscale: keep its full range
        im = im.convert("F" if scale > 255 else self.mode)
        im = im if im.size == (width, height) else im.resize((width, height), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.float32) / scale
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return np.repeat(arr, 3, axis=0) if self.mode == "RGB" and len(arr) == 1 else arr


class FileImages:
    """Opens image ``i`` of a folder by its relative path (picklable, unlike a closure)."""

    def __init__(self, root: Path, relative: list[str]) -> None:
        self.root, self.relative = Path(root), relative

    def __call__(self, i: int) -> Image.Image:
        return Image.open(self.root / self.relative[i])


class DatasetImages:
    """Opens image ``i`` of an image column of a Hugging Face dataset, stored undecoded (bytes or a path)."""

    def __init__(self, data: Any, column: str) -> None:
        self.data, self.column = data, column

    def __call__(self, i: int) -> Image.Image:
        item = self.data[int(i)][self.column]
        return Image.open(io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"])


class ParquetRows(Rows):
    """Numeric feature columns of a Parquet file, read one row group at a time as float32 (missing values as NaN,
    as ``DataFrame.to_numpy(dtype=float32, na_value=nan)`` gives); the last row group read is kept."""

    format = "parquet"

    def __init__(self, path: Path, columns: list[str], group_rows: list[int]) -> None:
        super().__init__((int(sum(group_rows)), len(columns)), np.float32, np.float32)
        self.path, self.columns = str(path), list(columns)
        self.starts = np.cumsum([0, *group_rows])
        self._last: tuple[int, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_last": None}

    def _group(self, g: int) -> np.ndarray:
        if self._last is None or self._last[0] != g:
            import pyarrow.parquet as pq

            frame = pq.ParquetFile(self.path).read_row_group(g, columns=self.columns).to_pandas()
            frame.columns = [str(c) for c in frame.columns]
            self._last = (g, frame[self.columns].to_numpy(dtype=np.float32, na_value=np.nan))
        return self._last[1]

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), len(self.columns)), np.float32)
        groups = np.searchsorted(self.starts, rows, side="right") - 1
        for g in np.unique(groups):
            at = groups == g
            out[at] = self._group(int(g))[rows[at] - self.starts[g]]
        return out


class DatasetRows(Rows):
    """A numeric array column of a saved Hugging Face dataset, read by row index (the Arrow data stay mapped)."""

    format = "hf_dataset"

    def __init__(self, data: Any, column: str, shape: tuple[int, ...], stored_dtype: Any, dtype: Any,
                 fail: Callable[[str], Exception]) -> None:
        super().__init__(shape, dtype, stored_dtype)
        self.data, self.column, self.fail = data, column, fail

    def _read(self, rows: np.ndarray) -> np.ndarray:
        block = np.asarray(self.data[rows.tolist()][self.column])
        if block.shape[1:] != self.shape[1:] or block.dtype.kind not in "biuf":
            raise self.fail(f"rows of column {self.column!r} differ in shape or type ({block.dtype}, {block.shape[1:]} "
                            f"against {self.shape[1:]} in row 0)")
        return block.astype(self.dtype)


class _Subset(Rows):
    """Rows ``index`` of another source: ``max_samples``' selection, or the rows kept by ``exclude_rows``."""

    def __init__(self, base: Rows, index: np.ndarray) -> None:
        super().__init__((len(index), *base.shape[1:]), base.dtype, base.stored_dtype)
        self.base, self.index = base, index
        self.format = base.format

    def _read(self, rows: np.ndarray) -> np.ndarray:
        return self.base.take(self.index[rows])

    def subset(self, rows: np.ndarray) -> Rows:
        return _Subset(self.base, self.index[np.asarray(rows, dtype=np.int64)])
