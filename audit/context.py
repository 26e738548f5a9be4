"""AuditContext: the model adapter, the data sets and a cache shared by every check.

Logits, probabilities, predictions and features are computed once per data set, batched on the
adapter's device, and shared: checks ask the context, they do not recompute. The data sets' inputs
are read a batch at a time (``audit.rows``), so only the cached outputs grow with the data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from audit.data import AuditDataset
from audit.errors import InputError, SkipCheck
from audit.results import ProbeResult
from models.adapter import ModelAdapter

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def _no_progress(_description: str, _total: int) -> Callable[[int], None]:
    return lambda _done: None


def _every_row(rows: np.ndarray, n: int) -> bool:
    """Whether ``rows`` are all ``n`` rows in order (then the whole set's outputs are computed and cached)."""
    return len(rows) == n and bool((rows == np.arange(n)).all())


def _rows_key(kind: str, rows: np.ndarray) -> str:
    """Cache key of an output for a subset of rows: the kind and a digest of the row indices."""
    return f"{kind}[{len(rows)} rows {hashlib.blake2b(rows.tobytes(), digest_size=8).hexdigest()}]"


def _refuse_nonfinite(name: str, ds: AuditDataset, out: torch.Tensor, rows: np.ndarray) -> None:
    """Non-finite logits on data set ``name`` (rows ``rows`` of it) are bad input naming the rows."""
    bad = np.flatnonzero(~torch.isfinite(out).all(dim=1).numpy())
    if not len(bad):
        return
    where = ", ".join(str(int(ds.indices[r]) if ds.indices is not None else int(r)) for r in rows[bad[:10]])
    sampled = " sampled" if len(rows) < len(ds) else ""
    raise InputError(f"{len(bad)} of {len(rows)}{sampled} rows of data.{name} give non-finite (NaN or infinite) logits "
                     f"(rows {where}{', …' if len(bad) > 10 else ''}); fix the model or its inputs "
                     "(model.allow_nonfinite excludes rows of data.eval only).")


class AuditContext:
    """Everything a check may use.

    Parameters
    ----------
    adapter : ModelAdapter
    datasets : dict of str to AuditDataset
        ``"eval"`` is required; ``"reference"`` and ``"ood"`` are optional.
    seed : int
    batch_size : int
    progress : callable, optional
        ``progress(description, total)`` returns an ``advance(done)`` callback; the CLI passes a
        rich progress bar, the library default is silent.
    model_meta : dict, optional
        The model's ``model.json`` sidecar (architecture, init_args, preprocessing, ``recipe``), when
        it has one; checks that retrain the model's pipeline read the recipe from it.
    """

    def __init__(self, adapter: ModelAdapter, datasets: dict[str, AuditDataset], *, seed: int = 0,
                 batch_size: int = 256, progress: ProgressFactory | None = None,
                 country_iso_code: str = "USA", model_meta: dict[str, Any] | None = None) -> None:
        if "eval" not in datasets:
            raise ValueError("AuditContext needs an 'eval' data set")
        self.adapter = adapter
        self.datasets = datasets
        self.seed = seed
        self.batch_size = batch_size
        self.progress = progress or _no_progress
        self.country_iso_code = country_iso_code
        self.model_meta = dict(model_meta or {})
        self._cache: dict[tuple[str, str], Any] = {}
        self._kept: dict[str, np.ndarray] = {}  # rows kept by exclude_rows, by data set
        #: What the model probe found (``audit.probe``); set by the runner before any check runs.
        self.probe: ProbeResult | None = None

    @property
    def device(self) -> torch.device:
        return self.adapter.device

    @property
    def class_names(self) -> list[str]:
        return self.adapter.class_names

    def dataset(self, name: str = "eval") -> AuditDataset:
        """A data set by role; a check that needs a missing one is skipped with the reason."""
        if name not in self.datasets:
            raise SkipCheck(f"no '{name}' data set was given (set data.{name} in the config).")
        return self.datasets[name]

    def rng(self, key: str) -> np.random.Generator:
        """A generator seeded from the audit seed and ``key`` (e.g. the check id), so a check's
        random draws do not depend on which other checks ran before it."""
        return np.random.default_rng([self.seed, zlib.crc32(key.encode())])

    def _cached(self, kind: str, name: str, compute: Callable[[], Any]) -> Any:
        key = (kind, name)
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def logits(self, name: str = "eval") -> torch.Tensor:
        """Logits of a whole data set (CPU, float32), computed once."""
        ds = self.dataset(name)

        def compute() -> torch.Tensor:
            advance = self.progress(f"model logits on '{name}' ({len(ds)} samples)", len(ds))
            out = self.adapter.predict_logits(ds.inputs, batch_size=self.batch_size, progress=advance)
            if name != "eval":  # the evaluation set is probed before any check (audit.probe)
                _refuse_nonfinite(name, ds, out, np.arange(len(ds)))
            return out

        return self._cached("logits", name, compute)

    def logits_for(self, name: str, rows: np.ndarray) -> torch.Tensor:
        """Logits of rows ``rows`` of a data set: taken from the whole set's logits when they are
        cached, else computed for those rows only (cached per data set and rows), so a check that
        caps its sample never pays for the rows it does not keep."""
        rows = np.asarray(rows, dtype=np.int64)
        ds = self.dataset(name)
        if ("logits", name) in self._cache or _every_row(rows, len(ds)):
            return self.logits(name)[torch.from_numpy(rows)]

        def compute() -> torch.Tensor:
            advance = self.progress(f"model logits on {len(rows)} of {len(ds)} '{name}' samples", len(rows))
            out = self.adapter.predict_logits(ds.select(rows), batch_size=self.batch_size, progress=advance)
            if name != "eval":
                _refuse_nonfinite(name, ds, out, rows)
            return out

        return self._cached(_rows_key("logits", rows), name, compute)

    def features_for(self, name: str, rows: np.ndarray) -> torch.Tensor:
        """Penultimate features of rows ``rows`` of a data set, like :meth:`logits_for`."""
        rows = np.asarray(rows, dtype=np.int64)
        ds = self.dataset(name)
        if ("features", name) in self._cache or _every_row(rows, len(ds)):
            return self.features(name)[torch.from_numpy(rows)]
        if not self.adapter.has_features:
            raise SkipCheck(f"the model ({self.adapter.format}) exposes no penultimate features.")

        def compute() -> torch.Tensor:
            advance = self.progress(f"features on {len(rows)} of {len(ds)} '{name}' samples", len(rows))
            try:
                return self.adapter.predict_features(ds.select(rows), batch_size=self.batch_size,
                                                     progress=advance)
            except NotImplementedError as exc:
                raise SkipCheck(str(exc)) from None

        return self._cached(_rows_key("features", rows), name, compute)

    def exclude_rows(self, name: str, keep: np.ndarray, logits: torch.Tensor) -> None:
        """Keep only rows ``keep`` of a data set, for every check (``model.allow_nonfinite``).

        ``logits`` are the data set's full logits; the kept ones stay cached, so nothing is recomputed.
        """
        keep = np.asarray(keep, dtype=np.int64)
        self._keep_rows(name, keep)
        for key in [k for k in self._cache if k[1] == name]:
            del self._cache[key]
        self._cache[("logits", name)] = logits[torch.from_numpy(keep)]

    def _keep_rows(self, name: str, keep: np.ndarray) -> None:
        ds = self.dataset(name)
        self._kept[name] = keep
        sens = ds.sensitive_features
        self.datasets[name] = dataclasses.replace(
            ds,
            inputs=[ds.inputs[i] for i in keep] if isinstance(ds.inputs, list) else ds.inputs.subset(keep),
            target=ds.target[keep] if ds.target is not None else None,
            sensitive_features=sens.iloc[keep].reset_index(drop=True) if sens is not None else None,
            indices=ds.indices[keep] if ds.indices is not None else keep,
        )

    def shipped_state(self) -> dict[str, Any]:
        """What another process needs to continue from this context without recomputing (a Ray worker that
        loaded the same model and data, ``audit.executor``): the cached outputs (the probe's evaluation
        logits), the rows ``exclude_rows`` kept, the probe's result, the model's sidecar and the batch size."""
        return {"cache": dict(self._cache), "kept": dict(self._kept), "probe": self.probe,
                "model_meta": dict(self.model_meta), "batch_size": self.batch_size}

    def receive_state(self, state: dict[str, Any]) -> None:
        """Continue from another context's :meth:`shipped_state` (same model and data, freshly loaded)."""
        for name, keep in state["kept"].items():
            self._keep_rows(name, keep)
        self._cache.update(state["cache"])
        self.probe = state["probe"]
        self.model_meta = dict(state["model_meta"])
        self.batch_size = int(state.get("batch_size", self.batch_size))

    def probs(self, name: str = "eval") -> np.ndarray:
        """Softmax probabilities, ``(n, classes)`` float64."""
        return self._cached("probs", name, lambda: torch.softmax(self.logits(name).double(), dim=1).numpy())

    def y_pred(self, name: str = "eval") -> np.ndarray:
        """Predicted class indices (argmax of the logits)."""
        return self._cached("y_pred", name, lambda: self.logits(name).argmax(dim=1).numpy().astype(np.int64))

    def y_true(self, name: str = "eval") -> np.ndarray:
        """True class indices; a check that needs labels is skipped when the data has none."""
        ds = self.dataset(name)
        if ds.target is None:
            raise SkipCheck(f"the '{name}' data set has no labels (set data.{name}.target).")
        return ds.target

    def features(self, name: str = "eval") -> torch.Tensor:
        """Penultimate features (CPU), computed once; skipped when the model exposes none."""
        if not self.adapter.has_features:
            raise SkipCheck(f"the model ({self.adapter.format}) exposes no penultimate features.")
        ds = self.dataset(name)

        def compute() -> torch.Tensor:
            advance = self.progress(f"features on '{name}' ({len(ds)} samples)", len(ds))
            try:
                return self.adapter.predict_features(ds.inputs, batch_size=self.batch_size, progress=advance)
            except NotImplementedError as exc:  # the adapter found on use that it cannot give features
                raise SkipCheck(str(exc)) from None

        return self._cached("features", name, compute)
