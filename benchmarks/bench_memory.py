"""Benchmark: peak memory of each image explanation method, unbounded (the libraries' one pass, as the check ran
before issue 17) and bounded by a batch size (the check now), on a ResNet-8 at 3×32×32 and 3×64×64, in one run.

Every (size, method, setting) runs in a fresh interpreter, which builds the model and inputs, imports the
libraries and explains once; the figure is the peak RSS that explaining adds (``resource.getrusage``
``ru_maxrss`` after minus before). Budgets are the check's defaults: 32 IG steps, 64 GradientSHAP/SHAP samples
over 32 background rows, 256 LIME perturbations, 16 curve steps, 8 perturbations for infidelity and
max-sensitivity (of GradientSHAP, the issue's 78% case). The two settings' outputs are compared (max
|difference|): bounding changes the memory, not the numbers. A worker that would need more than
``--limit-gib`` of address space stops with "over limit" instead of swapping out the machine.

    python benchmarks/bench_memory.py --sizes 32,64 --n 3 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("integrated_gradients", "saliency", "gradient_shap", "shap", "lime", "curves", "infidelity",
           "sensitivity")


def worker(method: str, side: int, n: int, batch: int | None, out: str) -> dict:
    """Explain ``n`` seeded 3×side×side images once with ``method``; ``batch`` None is the unbounded pass."""
    import resource

    import torch

    sys.path.insert(0, str(ROOT))
    from audit import explain as E
    from audit import explain_blackbox as B
    from models.zoo import create_model

    torch.manual_seed(0)
    model = create_model("resnet8", in_channels=3, n_classes=10).eval()
    gen = np.random.default_rng(0)
    x_np = gen.random((n, 3, side, side), dtype=np.float32)
    x, background = torch.from_numpy(x_np), torch.from_numpy(gen.random((32, 3, side, side), dtype=np.float32))
    target = model(x).argmax(1).detach()
    base = torch.zeros(1, 3, side, side)
    attr = torch.from_numpy(gen.standard_normal(x.shape).astype(np.float32))
    import captum.attr  # noqa: F401  (imported before the baseline is read)
    import captum.metrics  # noqa: F401
    import lime.lime_image  # noqa: F401
    import shap  # noqa: F401

    def gshap(inp: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return E.gradient_shap(model, inp, tgt, background, 64, 0, batch)

    run = {
        "integrated_gradients": lambda: E.integrated_gradients(model, x, target, base, 32, batch)[0],
        "saliency": lambda: E.saliency(model, x, target, base, batch),
        "gradient_shap": lambda: gshap(x, target),
        "shap": lambda: E.shap_gradient(model, x, target, background, 64, 0, batch),
        "lime": lambda: torch.from_numpy(B.lime_image(model, x_np, target.numpy(), torch.device("cpu"), n_samples=256,
                                                      segmentation="grid", batch_size=batch or 256)[0]),
        "curves": lambda: torch.from_numpy(np.stack(E.deletion_insertion(model, x, target, attr, base, 16, batch))),
        "infidelity": lambda: E.infidelity(model, x, target, attr, 0.01, 8, 0, batch),
        "sensitivity": lambda: E.sensitivity(gshap, x, target, 0.02, 8, 0, batch),
    }[method]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()
    try:
        result = run()
    except (MemoryError, RuntimeError) as exc:  # torch reports an allocation over the limit as a RuntimeError
        if "memory" not in str(exc).lower() and not isinstance(exc, MemoryError):
            raise
        return {"over_limit": True}
    seconds = time.process_time() - start
    added = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    np.save(out, result.detach().cpu().numpy())
    return {"added_mib": added, "cpu_s": seconds}


def _run_worker(method: str, side: int, n: int, batch: int | None, limit_gib: float, out: str) -> dict:
    code = (f"import resource, json, sys; sys.path.insert(0, {str(ROOT)!r}); "
            f"resource.setrlimit(resource.RLIMIT_AS, ({int(limit_gib * 2**30)}, {int(limit_gib * 2**30)})); "
            f"from benchmarks.bench_memory import worker; "
            f"print(json.dumps(worker({method!r}, {side}, {n}, {batch!r}, {out!r})))")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if done.returncode != 0:
        if "memory" in done.stderr.lower():
            return {"over_limit": True}
        raise SystemExit(f"{method} at {side}px failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(r: dict, limit: float) -> str:
    return f"> {limit:g} GiB" if r.get("over_limit") else f"{r['added_mib']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,64", help="image sides, comma-separated")
    parser.add_argument("--n", type=int, default=3, help="images explained (the check explains 12)")
    parser.add_argument("--batch-size", type=int, default=32, help="the bound: explanations.batch_size")
    parser.add_argument("--only", default="", help="comma-separated method names (default: all)")
    parser.add_argument("--limit-gib", type=float, default=10.0, help="address-space limit of each worker")
    args = parser.parse_args()
    methods = [m for m in METHODS if not args.only or m in args.only.split(",")]
    print(f"ResNet-8 (width 16), {args.n} images, CPU, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}; "
          f"peak RSS added by explaining (MiB), unbounded vs batch size {args.batch_size}")
    print(f"{'size':>5} {'method':<22} {'unbounded':>10} {'bounded':>8} {'ratio':>6} {'cpu s':>13} {'max |diff|':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for side in (int(s) for s in args.sizes.split(",")):
            for method in methods:
                paths = [str(Path(tmp) / f"{method}-{side}-{tag}.npy") for tag in ("before", "after")]
                before = _run_worker(method, side, args.n, None, args.limit_gib, paths[0])
                after = _run_worker(method, side, args.n, args.batch_size, args.limit_gib, paths[1])
                both = not before.get("over_limit") and not after.get("over_limit")
                ratio = f"{before['added_mib'] / max(after['added_mib'], 1):.1f}×" if both else "—"
                diff = f"{np.abs(np.load(paths[0]) - np.load(paths[1])).max():.1e}" if both else "—"
                cpu = f"{before['cpu_s']:.1f} / {after['cpu_s']:.1f}" if both else "—"
                print(f"{side:>4}² {method:<22} {_cell(before, args.limit_gib):>10} {_cell(after, args.limit_gib):>8} "
                      f"{ratio:>6} {cpu:>13} {diff:>10}", flush=True)


if __name__ == "__main__":
    main()
