"""Benchmark: Neural Cleanse's detection quality and cost before and after commit 866cb24, on the test suite's models.

Trains the two digits LeNet-5s of ``tests/audit/checks/test_poisoning.py`` (one with ART's pattern trigger on
12% of its training samples, labelled 0; one clean), then runs ``poisoning.backdoor_scan``'s Neural Cleanse
through the check (evaluation set only, so the ART defences do not run) over several audit seeds, with the
algorithm before (``benchmarks/_neural_cleanse_before.py``) and after. Prints, per seed, the anomaly index of
the planted model (its target class must be the one flagged) and of the clean model (must stay at or below
the threshold, 3), the optimisation steps summed over classes and the CPU seconds of the optimisation.

    OMP_NUM_THREADS=1 python benchmarks/bench_neural_cleanse.py --seeds 20
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import audit.checks.poisoning as scan  # noqa: E402
from _neural_cleanse_before import reverse_engineer_triggers as before  # noqa: E402
from audit.checks.poisoning import BackdoorScan, BackdoorScanConfig  # noqa: E402
from audit.context import AuditContext  # noqa: E402
from audit.data import AuditDataset  # noqa: E402
from audit.poisoning import image_trigger, poison_indices  # noqa: E402
from models.adapter import Normalize, TorchAdapter  # noqa: E402
from models.datasets import load_digits  # noqa: E402
from models.recipes import fit_recipe  # noqa: E402

AFTER = scan.reverse_engineer_triggers
INIT = {"in_channels": 1, "n_classes": 10, "image_size": 8, "width": 8}
RECIPE = {"name": "digits-lenet5", "lr": 3e-3, "batch_size": 32, "weight_decay": 0.0}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--n-samples", type=int, default=200, help="the tests' n_samples")
    args = ap.parse_args()
    torch.set_num_threads(1)
    digits = load_digits(seed=0, n_samples=900)
    x, y = digits.x_train.copy(), digits.y_train.copy()
    rows = poison_indices(y, 0, 0.12, np.random.default_rng(1))
    x[rows], y[rows] = image_trigger((1, 8, 8)).apply(x[rows]), 0
    pre = digits.preprocessing
    models = {name: fit_recipe(RECIPE, xs, ys, init_args=INIT, preprocessing=pre, epochs=20, seed=0)
              for name, xs, ys in (("planted", x, y), ("clean", digits.x_train, digits.y_train))}
    ev = AuditDataset(name="eval", inputs=digits.x_test, target=digits.y_test, class_names=None,
                      sensitive_features=None, feature_names=None, input_kind="image", path="mem", format="npz",
                      sha256="0")
    cfg = BackdoorScanConfig(max_samples=args.n_samples)
    table: dict[tuple[str, str], list[tuple[float, bool, int, float]]] = {}
    for version, technique in (("before", before), ("after", AFTER)):
        cost: dict[str, float] = {}

        def timed(*a, **kw):
            t0 = _cpu()
            found = technique(*a, **kw)
            cost["cpu"], cost["steps"] = _cpu() - t0, int(found.steps_used.sum())
            return found

        scan.reverse_engineer_triggers = timed
        for name, model in models.items():
            for seed in range(args.seeds):
                adapter = TorchAdapter(model, input_kind="image", device=torch.device("cpu"),
                                       preprocess=Normalize(pre["mean"], pre["std"]), input_range=(0.0, 1.0))
                out = BackdoorScan(cfg).run(AuditContext(adapter, {"eval": ev}, seed=seed))
                m = {(q.name, q.group): q.value for q in out.metrics}
                flagged_target = name == "planted" and m[("suspected_classes", None)] == 1 and \
                    m[("class_anomaly_index", "0")] == m[("anomaly_index", None)]
                table.setdefault((version, name), []).append(
                    (m[("anomaly_index", None)], flagged_target if name == "planted" else
                     m[("suspected_classes", None)] == 0, cost["steps"], cost["cpu"]))
        scan.reverse_engineer_triggers = AFTER
    print(f"{args.seeds} audit seeds, n_samples {args.n_samples}, 1 thread; anomaly threshold {cfg.anomaly_threshold:g}")
    for name in ("planted", "clean"):
        for version in ("before", "after"):
            rows_ = table[(version, name)]
            idx = np.array([r[0] for r in rows_])
            right = sum(r[1] for r in rows_)
            what = "target 0 flagged" if name == "planted" else "nothing flagged"
            print(f"{name:>7} {version:>6}: anomaly index min {idx.min():.2f} median {np.median(idx):.2f} max "
                  f"{idx.max():.2f}; {what} in {right}/{len(rows_)}; class-steps {np.mean([r[2] for r in rows_]):.0f} "
                  f"a scan; {np.mean([r[3] for r in rows_]):.2f} CPU-s a scan")
            print(f"{'':>15} per seed: {' '.join(f'{v:.2f}' for v in idx)}")
    b = sum(r[3] for k, v in table.items() if k[0] == "before" for r in v)
    a = sum(r[3] for k, v in table.items() if k[0] == "after" for r in v)
    print(f"Neural Cleanse CPU seconds, all scans: before {b:.1f}, after {a:.1f} ({b / a:.2f}x)")


if __name__ == "__main__":
    main()
