"""Benchmark: CPU seconds and peak memory of every default check on image models, before and after, and Neural Cleanse's share.

In one run, each configuration is audited in a fresh subprocess (so one's memory never counts against another)
with the default checks and the ``standard`` budget through ``audit.runner.run_audit``, twice:

- ``before``: the settings before issue 17's memory work, reproduced in the same run — ``batch_size: 256`` (the
  old default for every input size), Neural Cleanse as it was before commit 866cb24
  (``benchmarks/_neural_cleanse_before.py``: the model's weights requiring gradients, one batch of every class,
  one early stop for all classes), the synthetic OOD images made whole (``benchmarks/_ood_synthetic_before.py``,
  the code before 1b630bf) and image figures stored at full resolution in results.json;
- ``after``: the current code with its defaults (the batch size derived from the input size, Neural Cleanse with
  frozen weights and per-class early stopping, synthetic images a batch at a time, figures at most 64×64).

Configurations: a ResNet-8 (width 16) on 3×32×32 images, and the tests' small strided CNN
(``tests/assets/tiny_models.py:StridedCNN``, 8×8 stride-8 convolution, 5 classes) on 3×224×224 images with every
data set cut by ``max_samples`` (16). The data are generated (a smooth random template per class plus noise) and the models
trained briefly, so the checks see a model that has learnt something.

Per check it prints the process CPU seconds (``getrusage``: user + system, every thread), the wall seconds, the
peak RSS sampled every 5 ms while the check ran, and the process's own high-water mark so far (``VmHWM`` in
``/proc/self/status``; not ``ru_maxrss``, which a child inherits from the process that started it); then Neural
Cleanse's CPU seconds and share of the whole audit's CPU seconds, the class-steps it ran and its anomaly index,
and the size of results.json. ``--jobs`` audits that many configurations at once: RSS figures are per process
and unaffected, CPU seconds barely; wall seconds then include waiting for the cores.

    OMP_NUM_THREADS=1 python benchmarks/bench_heavy.py --jobs 4
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "assets"))

CONFIGS = {
    "resnet8-32 before": {"arch": "resnet8", "size": 32, "before": True},
    "resnet8-32 after": {"arch": "resnet8", "size": 32, "before": False},
    "cnn-224 before": {"arch": "strided", "size": 224, "before": True, "big": True},
    "cnn-224 after": {"arch": "strided", "size": 224, "before": False, "big": True},
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
    """Write model.safetensors (with model.json for zoo models), eval.npz and reference.npz."""
    import torch
    from safetensors.torch import save_file

    from models.adapter import Normalize
    from models.train import fit_classifier

    folder.mkdir(parents=True, exist_ok=True)
    x_ref, y_ref = make_data(n_ref, size, k, seed=1)
    x_ev, y_ev = make_data(n, size, k, seed=2)
    pre = {"mean": [0.5] * 3, "std": [0.25] * 3, "input_range": [0.0, 1.0]}
    torch.manual_seed(0)
    if arch == "strided":
        from tiny_models import StridedCNN

        model = StridedCNN(n_classes=k)
        fit_classifier(model, x_ref, y_ref, epochs=epochs, lr=1e-2, seed=0)
        norm = None
    else:
        from models.zoo import create_model

        init = {"in_channels": 3, "n_classes": k, "image_size": size}
        model = create_model(arch, **init)
        norm = Normalize(pre["mean"], pre["std"])
        fit_classifier(model, x_ref, y_ref, epochs=epochs, lr=3e-3, seed=0, preprocess=norm)
        (folder / "model.json").write_text(json.dumps({"architecture": arch, "init_args": init, "input_kind": "image",
                                                       "class_names": [f"c{c}" for c in range(k)],
                                                       "preprocessing": pre}))
    with torch.no_grad():
        xb = torch.from_numpy(x_ev[:256])
        acc = float((model(norm(xb) if norm else xb).argmax(1).numpy() == y_ev[:256]).mean())
    save_file({k_: v.contiguous() for k_, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    np.savez(folder / "eval.npz", x=x_ev, y=y_ev)
    np.savez(folder / "reference.npz", x=x_ref, y=y_ref)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{arch} {size}x{size}: {n_params:,} parameters, trained {epochs} epoch(s) on {n_ref} images, accuracy "
          f"{acc:.3f} on {min(256, n)} eval images", flush=True)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_mib() -> float:
    """This process's own peak RSS (VmHWM), in MiB."""
    with open("/proc/self/status") as fh:
        return int(next(line for line in fh if line.startswith("VmHWM:")).split()[1]) / 1024


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _use_old_settings() -> None:
    """The code paths of "before" (see the module docstring), patched into this worker process."""
    import torch

    import audit.checks.ood as ood
    import audit.images as images
    from _ood_synthetic_before import synthetic_sets

    ood.synthetic_sets = synthetic_sets
    images.pooled = lambda image, max_side=64: torch.as_tensor(  # full resolution, as figures were stored
        np.asarray(image) if not isinstance(image, torch.Tensor) else image).detach().float().cpu()
    images.downsampled_note = lambda shape, max_side=64: ""
    for module in ("audit.checks.explanations", "audit.checks.adversarial", "audit.checks.poisoning",
                   "audit.checks.attention"):
        importlib.import_module(module).downsampled_note = images.downsampled_note


def worker(name: str, folder: Path, args: argparse.Namespace) -> None:
    """Audit one configuration in this (fresh) process; print one JSON line per check and one for the total."""
    import audit.checks.poisoning as scan
    from audit.config import load_config
    from audit.poisoning import mad_anomaly_index
    from audit.runner import run_audit

    spec = CONFIGS[name]
    if spec["before"]:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _neural_cleanse_before import reverse_engineer_triggers as technique

        _use_old_settings()
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
                 "data.reference.path": str(folder / "reference.npz"), "output.dir": str(folder / f"out-{name}")}
    sets = [f"threads={args.threads}", f"seed={args.seed}", "output.html=false", "budget=standard"]
    if spec["arch"] == "strided":
        from tiny_models import STRIDED_CNN_CLASS

        overrides.update({"model.class": STRIDED_CNN_CLASS, "model.init_args": {"n_classes": args.big_classes}})
        sets += ["model.preprocessing.input_range=[0,1]"]
    if spec["before"]:
        sets += ["batch_size=256"]
    if spec.get("big"):
        sets += [f"data.eval.max_samples={args.big_max_samples}", f"data.reference.max_samples={args.big_max_samples}"]
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
                                 "hwm_mib": _hwm_mib()}), flush=True)

    rss0, cpu0, wall0 = _rss_bytes(), _cpu(), time.perf_counter()
    result = run_audit(cfg, on_start=on_start, on_check=on_check)
    state["running"] = False
    size = len(result.to_json().encode())
    print(MARK + json.dumps({"total": True, "cpu_s": _cpu() - cpu0, "wall_s": time.perf_counter() - wall0,
                             "rss_before_audit_mib": rss0 / 2**20, "hwm_mib": _hwm_mib(), "checks": len(result.checks),
                             "batch_size": result.provenance.batch_size, "results_json_mb": size / 1e6,
                             "neural_cleanse": nc}), flush=True)


def run_config(name: str, folder: Path, args: argparse.Namespace) -> tuple[list[dict], dict] | None:
    """Audit one configuration in a fresh subprocess; None (and its stderr's tail) when it failed."""
    cmd = [sys.executable, __file__, "--worker", name, "--folder", str(folder), "--threads", str(args.threads),
           "--seed", str(args.seed), "--big-max-samples", str(args.big_max_samples), "--big-classes", str(args.big_classes)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    rows = [json.loads(line[len(MARK):]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not rows or "total" not in rows[-1]:
        print(f"{name}: the audit subprocess failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
        return None
    return rows[:-1], rows[-1]


def show(name: str, rows: list[dict], total: dict) -> None:
    print(f"\n== {name}: {total['cpu_s']:.1f} CPU-s, {total['wall_s']:.1f} s wall, peak RSS {total['hwm_mib']:.0f} MiB "
          f"(RSS {total['rss_before_audit_mib']:.0f} MiB before the audit), batch size {total['batch_size']}, "
          f"results.json {total['results_json_mb']:.2f} MB")
    print(f"{'check':<34} {'status':<9} {'CPU s':>8} {'wall s':>8} {'peak RSS':>9} {'max so far':>10}")
    for r in rows:
        print(f"{r['check']:<34} {r['status']:<9} {r['cpu_s']:8.1f} {r['wall_s']:8.1f} {r['peak_rss_mib']:9.0f} "
              f"{r['hwm_mib']:10.0f}")
    nc = total["neural_cleanse"]
    if nc:
        print(f"Neural Cleanse: {nc['cpu_s']:.1f} CPU-s = {nc['cpu_s'] / total['cpu_s']:.1%} of the audit's CPU "
              f"seconds ({nc['wall_s']:.1f} s wall); class-steps {sum(nc['steps'])} (per class {nc['steps']}); "
              f"{nc['reached']} classes reached the trigger threshold; anomaly index {nc['anomaly_index']:.2f} "
              f"(smallest trigger: class {nc['smallest_class']})", flush=True)


def compare(results: dict[str, tuple[list[dict], dict]], key: str) -> None:
    """The before/after table of one configuration: per check peak RSS and CPU seconds, then the totals."""
    b, a = results.get(f"{key} before"), results.get(f"{key} after")
    if b is None or a is None:
        return
    before, after = {r["check"]: r for r in b[0]}, {r["check"]: r for r in a[0]}
    print(f"\n== {key}, before -> after (peak RSS sampled per check, MiB; CPU seconds)")
    print(f"{'check':<34} {'status':<20} {'peak RSS':>15} {'CPU s':>17}")
    for cid in after:
        x, y = before.get(cid), after[cid]
        if x is None:
            continue
        print(f"{cid:<34} {x['status'] + ' -> ' + y['status']:<20} {x['peak_rss_mib']:6.0f} -> {y['peak_rss_mib']:6.0f} "
              f"{x['cpu_s']:7.1f} -> {y['cpu_s']:7.1f}")
    tb, ta = b[1], a[1]
    nb, na = tb["neural_cleanse"], ta["neural_cleanse"]
    line = (f"whole audit: peak RSS {tb['hwm_mib']:.0f} -> {ta['hwm_mib']:.0f} MiB, {tb['cpu_s']:.1f} -> "
            f"{ta['cpu_s']:.1f} CPU-s, batch {tb['batch_size']} -> {ta['batch_size']}, results.json "
            f"{tb['results_json_mb']:.2f} -> {ta['results_json_mb']:.2f} MB")
    if nb and na:
        line += (f"; Neural Cleanse {nb['cpu_s']:.1f} -> {na['cpu_s']:.1f} CPU-s, share of the audit "
                 f"{nb['cpu_s'] / tb['cpu_s']:.1%} -> {na['cpu_s'] / ta['cpu_s']:.1%}, class-steps "
                 f"{sum(nb['steps'])} -> {sum(na['steps'])}, anomaly index {nb['anomaly_index']:.2f} -> "
                 f"{na['anomaly_index']:.2f}")
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="evaluation images of the 32x32 configurations")
    ap.add_argument("--n-ref", type=int, default=600, help="reference (training) images of the 32x32 configurations")
    ap.add_argument("--epochs", type=int, default=4, help="training epochs of the 32x32 ResNet-8")
    ap.add_argument("--big-n", type=int, default=256, help="images written for the 224x224 configurations")
    ap.add_argument("--big-max-samples", type=int, default=16, help="max_samples of every data set at 224x224")
    ap.add_argument("--big-classes", type=int, default=5, help="classes at 224x224 (Neural Cleanse's cost grows with them)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="configurations audited at once (each its own process)")
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
    print(f"torch {torch.__version__}, {args.threads} thread(s) per audit, {args.jobs} audit(s) at once, seed "
          f"{args.seed}; RSS in MiB; CPU = user + system seconds of the audit process", flush=True)
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
                        args.big_n if big else args.n_ref, 20 if big else args.epochs, args.big_classes if big else 10)

        def one(name: str) -> tuple[str, tuple[list[dict], dict] | None]:
            spec = CONFIGS[name]
            return name, run_config(name, folders[f"{spec['arch']}-{spec['size']}"], args)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for name, out in pool.map(one, args.configs):
                if out is not None:
                    results[name] = out
                    show(name, *out)
                if args.json:
                    Path(args.json).write_text(json.dumps(results, indent=1))
    for key in dict.fromkeys(name.rsplit(" ", 1)[0] for name in args.configs):
        compare(results, key)


if __name__ == "__main__":
    main()
