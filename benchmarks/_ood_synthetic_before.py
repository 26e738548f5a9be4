"""The built-in synthetic OOD image sets as they were before commit 1b630bf (audit/ood_scores.py at its parent), for
bench_heavy.py only: every set made whole as float32 (with float64 temporaries) before the model sees any of it —
1.2 GB at 3×224×224 with the standard n_synthetic of 500. Copied verbatim (image branch; other kinds delegate to
the current function), so the benchmark's "before" is the old code, not a slowed-down new one.
"""

from __future__ import annotations

import numpy as np

from audit.ood_scores import natural_patches
from audit.ood_scores import synthetic_sets as synthetic_sets_now
from audit.rows import ArrayRows, Rows


def synthetic_sets(inputs: Rows | np.ndarray | list[str], kind: str, n: int, rng: np.random.Generator,
                   input_range: tuple[float, float] | None) -> dict[str, np.ndarray | list[str]]:
    if kind != "image":
        return synthetic_sets_now(inputs, kind, n, rng, input_range)
    x = inputs if isinstance(inputs, Rows) else ArrayRows(np.asarray(inputs))
    pick = rng.integers(0, len(x), n)
    if kind == "image":
        lo, hi = input_range or x.value_range()
        shape = (n, *x.shape[1:])
        flat = x[pick].reshape(n, -1).copy()
        for row in flat:
            rng.shuffle(row)
        sets = {
            "uniform_noise": rng.uniform(lo, hi, shape).astype(np.float32),
            "gaussian_noise": np.clip(rng.normal((lo + hi) / 2, (hi - lo) / 4, shape), lo, hi).astype(np.float32),
            "pixel_shuffled": flat.reshape(shape).astype(np.float32),
        }
        if x.ndim == 4 and x.shape[1] in (1, 3):
            sets["natural_patches"] = natural_patches(x.shape[1:], n, rng, lo, hi)
        return sets
