"""Benchmark: latency, throughput, size, parameters and peak memory of every variant against its base.

Trains the digits LeNet-5 (a few epochs, into a temporary folder), builds every variant that runs on
``--device`` and measures each on the same held-out batches in one run. Ratios are variant / base;
where a variant is not faster or not smaller than its base, the script says so plainly.

    python benchmarks/bench_variants.py --device cpu --batch-size 256 --repeats 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit.attacks import pgd  # noqa: E402
from models.adapter import resolve_device  # noqa: E402
from models.loaders import load_model  # noqa: E402
from models.train import load_digits_split, train_digits_cnn  # noqa: E402
from models.variants import VARIANTS, list_variants, make_variant, parse_variant  # noqa: E402


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def latencies(modules: list[torch.nn.Module], batches: list[torch.Tensor], repeats: int,
              dev: torch.device) -> list[list[float]]:
    """Seconds per batch for every module, timed round-robin (one batch each, in turn) so that load
    from other processes on a shared machine hits every variant alike instead of whichever ran last."""
    times: list[list[float]] = [[] for _ in modules]
    with torch.no_grad():
        for m in modules:
            for b in batches[:3]:
                m(b)  # warm-up
        _sync(dev)
        for r in range(repeats):
            b = batches[r % len(batches)]
            for i, m in enumerate(modules):
                t0 = time.perf_counter()
                m(b)
                _sync(dev)
                times[i].append(time.perf_counter() - t0)
    return times


def peak_memory(module: torch.nn.Module, batch: torch.Tensor, dev: torch.device) -> int:
    """Peak bytes allocated during one forward pass."""
    with torch.no_grad():
        if dev.type == "cuda":
            _sync(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            module(batch)
            _sync(dev)
            return torch.cuda.max_memory_allocated(dev) - base
        tracemalloc.start()
        module(batch)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=5, help="training epochs for the base model")
    ap.add_argument("--variants", nargs="*", default=None, help="variant specs (default: every registered one)")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        weights = train_digits_cnn(Path(tmp), epochs=args.epochs, device="cpu")
        adapter = load_model(weights, device="cpu")
    base = adapter.module.eval()
    pre = adapter.preprocess
    split = load_digits_split()
    x_test = pre(torch.from_numpy(split["x_test"])).detach()
    y_test = split["y_test"]
    batches = [x_test[i : i + args.batch_size].to(dev) for i in range(0, len(x_test), args.batch_size)]
    batches = [b for b in batches if len(b) == args.batch_size] or batches[:1]
    # what `deepaudit compare` passes (audit.compare._training_data): raw inputs with the model's preprocessing and
    # input range, and the audit's PGD as pgd_at's inner maximisation (models/ imports nothing of audit/)
    finetune = {"x": split["x_train"], "y": split["y_train"], "epochs": 2, "preprocess": pre,
                "clip": adapter.input_range, "attack": pgd}

    specs = args.variants or list_variants()
    print(f"device: {dev}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"batch {batches[0].shape[0]}  repeats {args.repeats}  test samples {len(x_test)}")
    rows = []
    for spec in ["base", *specs]:
        if spec == "base":
            module, meta = base.to(dev), None
        else:
            name, _ = parse_variant(spec)
            if dev.type not in VARIANTS[name].devices:
                print(f"{spec:>20}: skipped, runs on {', '.join(VARIANTS[name].devices)} only")
                continue
            ft = {**finetune, "epochs": 20} if name == "distilled" else finetune
            res = make_variant(base.cpu(), spec, example_inputs=x_test[:32].to(dev), device=dev, finetune=ft)
            module, meta = res.module, res.metadata
        stats = {"peak_bytes": peak_memory(module, batches[0], dev), "module": module}
        with torch.no_grad():
            pred = torch.cat([module(x_test[i : i + 512].to(dev)).argmax(1).cpu() for i in range(0, len(x_test), 512)])
        stats["accuracy"] = float((pred.numpy() == y_test).mean())
        if meta is None:
            from models.variants import state_dict_bytes, _stored_elements

            stats["size"], stats["params"], stats["diff"] = state_dict_bytes(module), _stored_elements(module), True
        else:
            stats["size"], stats["params"], stats["diff"] = meta["size_bytes"], meta["stored_elements_after"], meta["differentiable"]
        rows.append((spec, stats))

    for (_, st), t in zip(rows, latencies([st.pop("module") for _, st in rows], batches, args.repeats, dev)):
        t.sort()
        st["p50_ms"] = statistics.median(t) * 1e3
        st["p95_ms"] = t[min(len(t) - 1, int(0.95 * len(t)))] * 1e3
        st["throughput"] = batches[0].shape[0] / (st["p50_ms"] / 1e3)
    b = rows[0][1]
    print(f"{'variant':>20} {'acc':>6} {'p50 ms':>8} {'p95 ms':>8} {'samples/s':>10} {'size B':>9} {'params':>8} "
          f"{'peak B':>10} {'grad':>5} | {'lat x':>6} {'size x':>6} {'params x':>8} {'peak x':>6}")
    for spec, s in rows:
        print(f"{spec:>20} {s['accuracy']:6.3f} {s['p50_ms']:8.3f} {s['p95_ms']:8.3f} {s['throughput']:10.0f} "
              f"{s['size']:9d} {s['params']:8d} {s['peak_bytes']:10d} {str(s['diff']):>5} | "
              f"{s['p50_ms'] / b['p50_ms']:6.2f} {s['size'] / b['size']:6.2f} {s['params'] / b['params']:8.2f} "
              f"{s['peak_bytes'] / max(b['peak_bytes'], 1):6.2f}")
    print()
    for spec, s in rows[1:]:
        notes = []
        if s["p50_ms"] >= b["p50_ms"]:
            notes.append(f"NOT faster than base on {dev.type} (p50 {s['p50_ms']:.3f} ms vs {b['p50_ms']:.3f} ms)")
        elif s["p50_ms"] > 0.95 * b["p50_ms"]:
            notes.append(f"no measurable speed-up on {dev.type} (p50 within 5% of base: timing noise, not a saving)")
        if s["size"] >= b["size"]:
            notes.append(f"NOT smaller on disk than base ({s['size']} B vs {b['size']} B)")
        if notes:
            print(f"{spec}: " + "; ".join(notes))
    print("ratios are variant / base; size is torch.save(state_dict) bytes; params counts stored tensor elements; "
          f"peak is {'torch.cuda.max_memory_allocated' if dev.type == 'cuda' else 'tracemalloc (Python-heap allocations only: ATen CPU tensor buffers are NOT counted, so the CPU peak column is a lower bound, not a comparison of real memory)'} "
          "for one batch.")


if __name__ == "__main__":
    main()
