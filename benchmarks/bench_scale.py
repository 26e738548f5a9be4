"""Benchmark: per-check wall time against the number of rows, under one sample budget (``budget``).

In one run it audits, with every check on and ``budget: standard`` (or ``--budget``):

* a small MLP (10 features, 2 classes, one sensitive column) on generated tables of 1k, 10k and 100k rows
  (evaluation and reference sets of that size each), and
* the zoo's ResNet-8 (3 channels, 10 classes) on generated 3×32×32 uint8 images, 1k and 10k of them.

Each model is first trained for a few epochs on its generated data (a label that depends on the inputs), so
the attacks and explanations see a model that has learnt something. Every audit runs in this process with one
thread and energy tracking off. It prints one table per input kind: for each check, its CPU seconds (the
process's, one thread: what a loaded shared machine does not inflate) and wall seconds at each size, and beside
them its caps, the check's ``sample_budget`` from the results (``n=`` the samples it reports). A
check whose cost the budget caps takes about the same time at every size; ``performance``, ``drift`` and the
per-group metrics and bootstraps of ``fairness.group_metrics`` see every row and grow with it (linearly), as
does the shared computation of the logits (in the whole audit's time, not a check's).

Last, in the same run, the scale-out efficiency of ``executor: ray`` (``benchmarks/_ray_scaleout.py``, what
``bench_ray.py`` runs on its own): the demo's digits LeNet-5 audited by the local executor and on a local Ray
cluster with 1 and ``--ray-workers`` workers, numbers checked equal, speed-up and efficiency printed
(``--ray-workers 0`` leaves it out).

    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py                       # 1k/10k/100k rows, 1k/10k images, Ray
    python benchmarks/bench_scale.py --rows 1000 10000 --images 1000 --budget quick --ray-workers 0
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _ray_scaleout import DEFAULT_CHECKS, scale_out  # noqa: E402
from audit.config import validate_config  # noqa: E402
from audit.runner import run_audit  # noqa: E402
from models.zoo import create_model  # noqa: E402

N_FEATURES = 10


def _tabular(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    x[:, 0] += 0.5 * group
    logit = x[:, 0] - 0.8 * x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + rng.normal(scale=0.5, size=n)
    return {"x": x, "y": (logit > 0).astype(np.int64), "group": group}


def _images(n: int, seed: int) -> dict[str, np.ndarray]:
    """3×32×32 uint8 images whose class sets the brightness of one of ten 8×8 tiles, on noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 128, size=(n, 3, 32, 32), dtype=np.uint8)
    for c in range(10):
        rows = np.flatnonzero(y == c)
        r, col = divmod(c, 4)
        x[rows, :, r * 8:(r + 1) * 8, col * 8:(col + 1) * 8] += 100
    return {"x": x, "y": y.astype(np.int64)}


def _train(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


class BenchMLP(nn.Module):
    """The tabular model: the zoo's MLP (10 features, 2 classes). Loaded by the audit from this file."""

    def __init__(self) -> None:
        super().__init__()
        self.net = create_model("mlp", n_features=N_FEATURES, n_classes=2, hidden=64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BenchResNet8(nn.Module):
    """The image model: the zoo's ResNet-8 (3 channels, 10 classes); raw uint8 pixel values (0–255) in."""

    def __init__(self) -> None:
        super().__init__()
        self.net = create_model("resnet8", in_channels=3, n_classes=10, image_size=32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / 255.0)


def _model(kind: str, folder: Path, seed: int) -> tuple[Path, str]:
    """Train the model on generated data and save its weights (safetensors; a torch module the audit may
    fine-tune, as the backdoor simulation does); ``(path, class)``."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    if kind == "tabular":
        data, model, epochs = _tabular(5000, seed + 99), BenchMLP(), 5
    else:
        data, model, epochs = _images(1000, seed + 99), BenchResNet8(), 2
    _train(model, data["x"], data["y"], epochs=epochs, seed=seed)
    path = folder / f"{kind}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, f"{Path(__file__).resolve()}:{type(model).__name__}"


def _config(kind: str, model: tuple[Path, str], folder: Path, n: int, budget: str, seed: int) -> Any:
    make = _tabular if kind == "tabular" else _images
    sets = {}
    for role, offset in (("eval", 1), ("reference", 2)):
        path = folder / f"{kind}-{n}-{role}.npz"
        np.savez(path, **make(n, seed + offset))  # uncompressed: streamed by rows
        sets[role] = {"path": str(path), "sensitive_features": ["group"] if kind == "tabular" else []}
    data: dict[str, Any] = {
        "model": {"path": str(model[0]), "class": model[1], "format": "safetensors", "input_kind": kind,
                  "preprocessing": {"input_range": [0, 255]} if kind == "image" else {}},
        "data": sets, "device": "cpu", "seed": seed, "threads": 1, "budget": budget,
        "energy": {"track": False}, "output": {"dir": str(folder / "out"), "html": False},
        "checks": {"poisoning.backdoor_simulation": {"retrain": "finetune"}},
    }
    if kind == "image":  # the budgets in raw pixel units (0–255): 2/255 and 8/255
        data["checks"]["adversarial"] = {"eps": [2.0, 8.0]}
    return validate_config(data, "bench_scale")


def _cap(result: Any) -> str:
    """The check's sample budget (lists as their largest value), the rows it reports and a skip's reason."""
    parts = [f"{k}={v if not isinstance(v, list) else max(v)}" for k, v in result.sample_budget.items()]
    if result.status == "skipped":
        return f"skipped: {result.skip_reason[:70]}"
    return " ".join(parts + ([f"n={result.n_samples}"] if result.n_samples is not None else []))


def _table(kind: str, runs: dict[int, Any]) -> None:
    sizes = list(runs)
    ids = [c.id for c in runs[sizes[0]].checks]
    print(f"\n{kind}: CPU s / wall s per check, and its status, at N = {', '.join(f'{n:,}' for n in sizes)}")
    header = f"{'check':<30}" + "".join(f"{f'N={n:,}':>18}" for n in sizes) + "   sample budget at the largest N"
    print(header)
    print("-" * len(header))
    for cid in ids:
        cells = []
        for n in sizes:
            c = runs[n].check(cid)
            cells.append(f"{runs[n].cpu.get(cid, float('nan')):>9.1f}/{c.duration_s:>6.1f}{c.status[0].upper():>2}")
        print(f"{cid:<30}{''.join(cells)}   {_cap(runs[sizes[-1]].check(cid))}")
    print(f"{'whole audit (load, logits)':<30}" + "".join(f"{runs[n].cpu_total:>9.1f}/{runs[n].wall:>6.1f}  "
                                                         for n in sizes))


class _Run:
    def __init__(self, result: Any, wall: float, cpu_total: float, cpu: dict[str, float]) -> None:
        self.checks, self.wall, self.cpu_total, self.cpu = result.checks, wall, cpu_total, cpu

    def check(self, cid: str) -> Any:
        return next(c for c in self.checks if c.id == cid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[1000, 10_000, 100_000], help="Tabular sizes.")
    parser.add_argument("--images", type=int, nargs="*", default=[1000, 10_000], help="Image set sizes.")
    parser.add_argument("--budget", default="standard", choices=["quick", "standard", "thorough"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ray-workers", type=int, default=2, help="Workers of the Ray scale-out run (0: no Ray section).")
    parser.add_argument("--ray-checks", default=DEFAULT_CHECKS, help="Checks of the Ray section, comma-separated.")
    parser.add_argument("--ray-explain", type=int, default=36, help="Samples the Ray section's explanations explain "
                        "(36, as bench_ray.py: with fewer the workers' start-up outweighs the checks on 2 cores).")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"budget {args.budget}; {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        folder = Path(tmp)
        for kind, sizes in (("tabular", args.rows), ("image", args.images)):
            if not sizes:
                continue
            model = _model(kind, folder, args.seed)
            runs: dict[int, Any] = {}
            for n in sizes:
                cfg = _config(kind, model, folder, n, args.budget, args.seed)
                cpu: dict[str, float] = {}
                start, start_cpu = time.perf_counter(), time.process_time()
                result = run_audit(cfg, on_start=lambda cid, i, k: cpu.__setitem__(cid, time.process_time()),
                                   on_check=lambda r: cpu.__setitem__(r.id, time.process_time() - cpu[r.id]))
                runs[n] = _Run(result, time.perf_counter() - start, time.process_time() - start_cpu, cpu)
                print(f"  {kind} N={n:,}: {runs[n].cpu_total:.1f} CPU s, {runs[n].wall:.1f} s wall, load average "
                      f"{os.getloadavg()[0]:.1f}; per check: " + ", ".join(
                          f"{c.id} {runs[n].cpu.get(c.id, float('nan')):.1f}" for c in runs[n].checks), flush=True)
                for f in folder.glob(f"{kind}-{n}-*.npz"):
                    f.unlink()
            _table(kind, runs)
        if args.ray_workers:
            print(f"\nRay scale-out: 1 worker against {args.ray_workers}, load average {os.getloadavg()[0]:.1f}", flush=True)
            torch.set_num_threads(1)
            scale_out(args.ray_workers, [c.strip() for c in args.ray_checks.split(",") if c.strip()], folder / "ray",
                      n_explain=args.ray_explain, seed=args.seed)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
