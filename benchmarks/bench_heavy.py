"""Benchmark: CPU seconds and peak memory of every default check on image models, and Neural Cleanse's share.

In one run, each configuration is audited in a fresh subprocess (so one's memory never counts against
another) with the default checks through ``audit.runner.run_audit``:

- ``resnet8-32 before``: a ResNet-8 on 3×32×32 images, Neural Cleanse as it was before commit 866cb24
  (``benchmarks/_neural_cleanse_before.py``: weights requiring gradients, one batch of every class, one
  early stop for all classes);
- ``resnet8-32 after``: the same model, data and seed with the current Neural Cleanse (weights frozen,
  passes of at most the audit's batch_size rows, per-class early stopping);
- ``lenet5-224``: a LeNet-5 on 3×224×224 images, every data set cut by ``max_samples``: the whole audit's
  peak RSS at a real image size (issue 17's "Done when"). Neural Cleanse's optimisation steps are cut
  (``--big-nc-steps``) because its time at 224² does not depend on ``max_samples``; every step is a full-size
  pass, so its memory is the same as with 300 steps.

The data are generated (a smooth random template per class plus noise) and the models trained for a few
epochs, so that the checks see a model that has learnt something. Per check it prints the process CPU
seconds (``getrusage``: user + system, every thread), the wall seconds, the peak RSS sampled every 5 ms
while the check ran, and the process's peak RSS so far (``ru_maxrss``); then Neural Cleanse's CPU seconds,
its share of the whole audit's CPU seconds, the optimisation steps its classes ran and its anomaly index.

    OMP_NUM_THREADS=1 python benchmarks/bench_heavy.py --n 300 --n-ref 600
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = {
    "resnet8-32 before": {"arch": "resnet8", "size": 32, "nc": "before"},
    "resnet8-32 after": {"arch": "resnet8", "size": 32, "nc": "after"},
    "lenet5-224": {"arch": "lenet5", "size": 224, "nc": "after", "big": True},
}
MARK = "BENCH_HEAVY "


def make_data(n: int, size: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (3, size, size) in [0, 1]: a smooth random template per class (upsampled 4×4 noise) plus
    pixel noise, ``k`` balanced classes."""
    import torch

    gen = np.random.default_rng(seed)
    small = np.random.default_rng(1234).random((k, 3, 4, 4)).astype(np.float32)
    templates = torch.nn.functional.interpolate(torch.from_numpy(small), size=(size, size), mode="bilinear",
                                                align_corners=False).numpy()
    y = np.arange(n) % k
    gen.shuffle(y)
    x = 0.6 * templates[y] + 0.4 * gen.random((n, 3, size, size), dtype=np.float32)
    return x.clip(0, 1).astype(np.float32), y.astype(np.int64)


def prepare(folder: Path, arch: str, size: int, n: int, n_ref: int, epochs: int, k: int = 10) -> None:
    """Write model.safetensors, model.json, eval.npz and reference.npz for one architecture and image size."""
    import torch
    from safetensors.torch import save_file

    from models.adapter import Normalize
    from models.train import fit_classifier
    from models.zoo import create_model

    folder.mkdir(parents=True, exist_ok=True)
    x_ref, y_ref = make_data(n_ref, size, k, seed=1)
    x_ev, y_ev = make_data(n, size, k, seed=2)
    init = {"in_channels": 3, "n_classes": k, "image_size": size}
    pre = {"mean": [0.5] * 3, "std": [0.25] * 3, "input_range": [0.0, 1.0]}
    torch.manual_seed(0)
    model = create_model(arch, **init)
    fit_classifier(model, x_ref, y_ref, epochs=epochs, lr=3e-3, seed=0, preprocess=Normalize(pre["mean"], pre["std"]))
    with torch.no_grad():
        acc = float((model(Normalize(pre["mean"], pre["std"])(torch.from_numpy(x_ev[:256]))).argmax(1).numpy()
                     == y_ev[:256]).mean())
    save_file({k_: v.contiguous() for k_, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "model.json").write_text(json.dumps({"architecture": arch, "init_args": init, "input_kind": "image",
                                                   "class_names": [f"c{c}" for c in range(k)],
                                                   "preprocessing": pre}))
    np.savez(folder / "eval.npz", x=x_ev, y=y_ev)
    np.savez(folder / "reference.npz", x=x_ref, y=y_ref)
    print(f"{arch} {size}x{size}: trained {epochs} epoch(s) on {n_ref} images, accuracy {acc:.3f} on 256 eval images",
          flush=True)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker(name: str, folder: Path, args: argparse.Namespace) -> None:
    """Audit one configuration in this (fresh) process; print one JSON line per check and one for the total."""
    import audit.checks.poisoning as scan
    from audit.config import load_config
    from audit.poisoning import mad_anomaly_index
    from audit.runner import run_audit

    spec = CONFIGS[name]
    if spec["nc"] == "before":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _neural_cleanse_before import reverse_engineer_triggers as technique
    else:
        technique = scan.reverse_engineer_triggers
    nc: dict = {}

    def timed(*a, **kw):  # Neural Cleanse alone, inside the backdoor scan
        t0, w0 = _cpu(), time.perf_counter()
        found = technique(*a, **kw)
        index = mad_anomaly_index(found.mask_l1)
        nc.update(cpu_s=_cpu() - t0, wall_s=time.perf_counter() - w0, steps=found.steps_used.tolist(),
                  reached=int(found.reached.sum()), anomaly_index=float(index[found.mask_l1 <= np.median(found.mask_l1)].max()),
                  smallest_class=int(np.argmin(found.mask_l1)))
        return found

    scan.reverse_engineer_triggers = timed
    overrides = {"model.path": str(folder / "model.safetensors"), "data.eval.path": str(folder / "eval.npz"),
                 "data.reference.path": str(folder / "reference.npz"), "output.dir": str(folder / "out")}
    sets = [f"threads={args.threads}", f"seed={args.seed}"]
    if spec.get("big"):
        sets += [f"data.eval.max_samples={args.big_max_samples}", f"data.reference.max_samples={args.big_max_samples}",
                 f"checks.poisoning.backdoor_scan.steps={args.big_nc_steps}"]
    cfg = load_config(None, overrides, sets)
    state = {"peak": 0, "running": True}

    def sample() -> None:
        while state["running"]:
            state["peak"] = max(state["peak"], _rss_bytes())
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    starts: dict[str, tuple[float, float]] = {}

    def on_start(check_id: str, index: int, total: int) -> None:
        state["peak"] = _rss_bytes()
        starts[check_id] = (_cpu(), time.perf_counter())

    def on_check(result) -> None:  # noqa: ANN001
        cpu0, wall0 = starts.get(result.id, (float("nan"), float("nan")))
        peak = max(state["peak"], _rss_bytes())
        print(MARK + json.dumps({"check": result.id, "status": result.status, "cpu_s": _cpu() - cpu0,
                                 "wall_s": time.perf_counter() - wall0, "peak_rss_mib": peak / 2**20,
                                 "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)

    rss0, cpu0, wall0 = _rss_bytes(), _cpu(), time.perf_counter()
    result = run_audit(cfg, on_start=on_start, on_check=on_check)
    state["running"] = False
    print(MARK + json.dumps({"total": True, "cpu_s": _cpu() - cpu0, "wall_s": time.perf_counter() - wall0,
                             "rss_before_audit_mib": rss0 / 2**20,
                             "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                             "checks": len(result.checks),
                             "neural_cleanse": nc}), flush=True)


def run_config(name: str, folder: Path, args: argparse.Namespace) -> tuple[list[dict], dict] | None:
    """Audit one configuration in a fresh subprocess; None (and its stderr's tail) when it failed."""
    cmd = [sys.executable, __file__, "--worker", name, "--folder", str(folder), "--threads", str(args.threads),
           "--seed", str(args.seed), "--big-max-samples", str(args.big_max_samples), "--big-nc-steps", str(args.big_nc_steps)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    rows = [json.loads(line[len(MARK):]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not rows or "total" not in rows[-1]:
        print(f"{name}: the audit subprocess failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
        return None
    return rows[:-1], rows[-1]


def show(name: str, rows: list[dict], total: dict) -> None:
    print(f"\n== {name}: {total['cpu_s']:.1f} CPU-s, {total['wall_s']:.1f} s wall, peak RSS {total['maxrss_mib']:.0f} MiB "
          f"(RSS {total['rss_before_audit_mib']:.0f} MiB before the audit)")
    print(f"{'check':<34} {'status':<9} {'CPU s':>8} {'wall s':>8} {'peak RSS':>9} {'max so far':>10}")
    for r in rows:
        print(f"{r['check']:<34} {r['status']:<9} {r['cpu_s']:8.1f} {r['wall_s']:8.1f} {r['peak_rss_mib']:9.0f} "
              f"{r['maxrss_mib']:10.0f}")
    nc = total["neural_cleanse"]
    if nc:
        print(f"Neural Cleanse: {nc['cpu_s']:.1f} CPU-s = {nc['cpu_s'] / total['cpu_s']:.1%} of the audit's CPU "
              f"seconds ({nc['wall_s']:.1f} s wall); class-steps {sum(nc['steps'])} (per class {nc['steps']}); "
              f"{nc['reached']} classes reached the trigger threshold; anomaly index {nc['anomaly_index']:.2f} "
              f"(smallest trigger: class {nc['smallest_class']})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="evaluation images of the 32x32 configurations")
    ap.add_argument("--n-ref", type=int, default=600, help="reference (training) images of the 32x32 configurations")
    ap.add_argument("--epochs", type=int, default=4, help="training epochs of the 32x32 ResNet-8")
    ap.add_argument("--big-n", type=int, default=256, help="images written for the 224x224 configuration")
    ap.add_argument("--big-max-samples", type=int, default=64, help="max_samples of every data set at 224x224")
    ap.add_argument("--big-nc-steps", type=int, default=10, help="Neural Cleanse steps at 224x224 (time, not memory)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--json", help="also write the raw figures to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, Path(args.folder), args)
        return
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), seed {args.seed}; RSS in MiB; CPU = user + system "
          "seconds of the audit process", flush=True)
    results: dict[str, tuple[list[dict], dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for name in args.configs:
            spec = CONFIGS[name]
            key = f"{spec['arch']}-{spec['size']}"
            if key not in folders:
                folders[key] = Path(tmp) / key
                big = spec.get("big", False)
                prepare(folders[key], spec["arch"], spec["size"], args.big_n if big else args.n,
                        args.big_n if big else args.n_ref, 1 if big else args.epochs)
            out = run_config(name, folders[key], args)
            if out is not None:
                results[name] = out
                show(name, *out)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
    if "resnet8-32 before" in results and "resnet8-32 after" in results:
        b, a = results["resnet8-32 before"][1], results["resnet8-32 after"][1]
        nb, na = b["neural_cleanse"], a["neural_cleanse"]
        print(f"\nNeural Cleanse before/after: {nb['cpu_s']:.1f} -> {na['cpu_s']:.1f} CPU-s "
              f"({nb['cpu_s'] / max(na['cpu_s'], 1e-9):.2f}x), share of the audit {nb['cpu_s'] / b['cpu_s']:.1%} -> "
              f"{na['cpu_s'] / a['cpu_s']:.1%}; whole audit {b['cpu_s']:.1f} -> {a['cpu_s']:.1f} CPU-s; peak RSS "
              f"{b['maxrss_mib']:.0f} -> {a['maxrss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
