"""Benchmark: peak memory of an audit against the size of its data set (streamed data sets, ``audit.rows``).

Each audit runs in a fresh process (``python cli.py audit ...``) and reports its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``). The data are uint8 images in an uncompressed ``.npz``
(``numpy.savez``), the model a small TorchScript CNN; the audit runs ``performance`` and ``ood`` only.

It prints, for each size, the peak RSS of the audit and of the reference — what holding the set as one
float32 array costs (``np.load(...)["x"].astype(np.float32)`` in a fresh process, how the sets were loaded
before streaming) — and the increase between the smallest and each larger size.

    python benchmarks/bench_streaming.py --size 64 --n 500 5000          # the test's setting (issue 14)
    python benchmarks/bench_streaming.py --size 224 --n 4000 --max-samples 500 --max-bytes 256MiB
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

CHILD_AUDIT = """
import resource, sys
sys.argv = ["deepaudit", *sys.argv[1:]]
import cli
try:
    cli.main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "EXIT", code, file=sys.stderr)
"""

CHILD_WHOLE = """
import resource, sys
import numpy as np
import torch  # the audit process imports torch too
x = np.load(sys.argv[1])["x"].astype(np.float32)
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "EXIT", 0, file=sys.stderr)
"""


class SmallCNN(nn.Module):
    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.conv(x / 255.0))).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


def write_images(path: Path, n: int, size: int, seed: int) -> Path:
    """``n`` uint8 3×size×size images, labels 0..2; stored uncompressed (numpy.savez)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, 3, size, size), np.uint8)
    for start in range(0, n, 256):  # in chunks: the writer's memory does not matter, but keep it small
        stop = min(start + 256, n)
        x[start:stop] = rng.integers(0, 256, (stop - start, 3, size, size), dtype=np.uint8)
    np.savez(path, x=x, y=rng.integers(0, 3, n))
    return path


def write_model(path: Path) -> Path:
    torch.manual_seed(0)
    torch.jit.script(SmallCNN().eval()).save(str(path))
    return path


def peak_mb(child: str, args: list[str]) -> tuple[float, int, float]:
    """Peak RSS (MB) and exit code of a fresh process, and its wall time."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", child, *args], cwd=ROOT, capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=1800)
    elapsed = time.perf_counter() - start
    tail = proc.stderr.rsplit("MAXRSS_KB", 1)
    if len(tail) != 2:
        raise RuntimeError(proc.stderr[-3000:])
    kb, _, code = tail[1].split()[:3]
    return int(kb) / 1024, int(code), elapsed


def audit_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    from audit.registry import list_checks

    off = [flag for c in list_checks() if c not in ("performance", "ood")
           for flag in ("--set", f"checks.{c}.enabled=false")]
    return ["audit", "--model", str(model), "--data", str(data), "--out", str(out), "--quiet", "--device", "cpu",
            "--set", "energy.track=false", "--set", "output.html=false", *off, *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[500, 5000], help="set sizes; the first is the baseline")
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--max-bytes", default=None, help="data.eval.max_bytes, e.g. 256MiB")
    parser.add_argument("--no-reference", action="store_true", help="skip the float32 whole-load reference")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to the audit")
    args = parser.parse_args()
    extra = [] if args.max_samples is None else ["--max-samples", str(args.max_samples)]
    extra += [flag for kv in args.set for flag in ("--set", kv)]
    extra += [] if args.max_bytes is None else ["--set", f"data.eval.max_bytes={args.max_bytes}"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = write_model(tmp_path / "cnn.pt")
        rows = []
        for n in args.n:
            data = write_images(tmp_path / f"x{n}.npz", n, args.size, seed=n)
            mb, code, seconds = peak_mb(CHILD_AUDIT, audit_args(model, data, tmp_path / f"out{n}", *extra))
            whole = None if args.no_reference else peak_mb(CHILD_WHOLE, [str(data)])[0]
            rows.append((n, data.stat().st_size / 1e6, mb, code, seconds, whole))
            data.unlink()
    base = rows[0][2]
    print(f"images 3x{args.size}x{args.size} uint8, uncompressed npz; audit: performance + ood"
          + (f"; --max-samples {args.max_samples}" if args.max_samples else "") + "".join(f"; {kv}" for kv in args.set))
    print(f"{'N':>8} {'file MB':>9} {'audit peak MB':>14} {'increase MB':>12} {'exit':>5} {'seconds':>8} "
          f"{'float32 whole-load peak MB':>27}")
    for n, file_mb, mb, code, seconds, whole in rows:
        print(f"{n:>8} {file_mb:>9.1f} {mb:>14.1f} {mb - base:>12.1f} {code:>5} {seconds:>8.1f} "
              f"{'' if whole is None else f'{whole:.1f}':>27}")


if __name__ == "__main__":
    main()
