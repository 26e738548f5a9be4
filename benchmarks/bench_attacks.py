"""Benchmark: deepaudit's torch-native PGD against ART's ProjectedGradientDescentPyTorch and a bare loop, in one run.

Same model (a LeNet-5 style CNN trained on scikit-learn's digits, or an MLP), same inputs, same
ε, step size, steps, batch size and no random start, so both compute the same attack; the script
checks that robust accuracies agree within one percentage point before it prints the speed ratio.
Every path is timed once per round, in rotating order, after a warm-up run; the minimum over the
rounds is the number compared (the median and maximum are printed beside it), which keeps a busy,
shared machine from deciding the ratio.

    python benchmarks/bench_attacks.py --n 1024 --steps 20 --device cpu --repeats 5
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from torch import nn

from audit.attacks import pgd


def build(device: str) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    from models.loaders import load_model
    from models.train import train_digits_cnn

    folder = tempfile.mkdtemp(prefix="bench-attacks-")
    weights = train_digits_cnn(folder, epochs=5, device=device)
    adapter = load_model(weights, device=device)
    data = np.load(f"{folder}/test.npz")
    return adapter.as_module().eval(), data["x"], data["y"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds; each round times every path once, in rotating order; the minimum is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    model, x, y = build(args.device)
    reps = int(np.ceil(args.n / len(x)))
    x, y = np.tile(x, (reps, 1, 1, 1))[: args.n], np.tile(y, reps)[: args.n]
    step = 2.5 * args.eps / args.steps
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    xt, yt = torch.from_numpy(x).to(args.device), torch.from_numpy(y).to(args.device)
    batches = [(xt[i : i + args.batch_size], yt[i : i + args.batch_size]) for i in range(0, args.n, args.batch_size)]

    def ours() -> torch.Tensor:
        return torch.cat([pgd(model, xb, yb, eps=args.eps, steps=args.steps, step_size=step, random_start=False,
                              clip=(0.0, 1.0)) for xb, yb in batches])

    def bare(frozen: bool) -> None:
        # The compute bound: forward plus input-gradient backward passes, same batches and steps, and the
        # plainest update. With frozen=False the parameters keep requires_grad (a naive loop); with True
        # they are switched off, as deepaudit's PGD does: the tighter bound.
        params = list(model.parameters())
        if frozen:
            for p in params:
                p.requires_grad_(False)
        try:
            for xb, yb in batches:
                xb = xb.clone()
                for _ in range(args.steps):
                    xb.requires_grad_(True)
                    (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(xb), yb, reduction="sum"), xb)
                    xb = (xb.detach() + step * g.sign()).clamp(0, 1)
        finally:
            for p in params:
                p.requires_grad_(True)

    clf = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=x.shape[1:], nb_classes=10,
                            clip_values=(0.0, 1.0), device_type="gpu" if args.device.startswith("cuda") else "cpu")
    attack = ProjectedGradientDescentPyTorch(clf, eps=args.eps, eps_step=step, max_iter=args.steps, num_random_init=0,
                                             batch_size=args.batch_size, verbose=False)

    def art() -> np.ndarray:
        return attack.generate(x, y=np.eye(10)[y])

    paths = {"ART PyTorch PGD": art, "deepaudit PGD": ours, "bare fwd+bwd (naive)": lambda: bare(False),
             "bare fwd+bwd (frozen params)": lambda: bare(True)}
    times: dict[str, list[float]] = {k: [] for k in paths}
    outputs: dict[str, object] = {}
    for fn in paths.values():  # warm-up: allocator, oneDNN primitives, ART's first-call set-up
        fn()
    names = list(paths)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync()
            t0 = time.perf_counter()
            outputs[name] = paths[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
    with torch.no_grad():
        acc_ours = float((model(outputs["deepaudit PGD"]).argmax(1) == yt).float().mean())
        acc_art = float((model(torch.from_numpy(outputs["ART PyTorch PGD"]).to(args.device)).argmax(1) == yt)
                        .float().mean())
    assert abs(acc_ours - acc_art) <= 0.01, (acc_ours, acc_art)
    best = {k: min(v) for k, v in times.items()}
    print(f"PGD L-inf eps={args.eps}, {args.steps} steps, n={args.n}, batch {args.batch_size}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, {args.repeats} rounds (min [median .. max])")
    print(f"  robust accuracy: deepaudit {acc_ours:.4f}, ART {acc_art:.4f} (agree within 1 pp)")
    for k, v in times.items():
        print(f"  {k:<29}: {best[k]:8.3f} s  [{float(np.median(v)):.3f} .. {max(v):.3f}]")
    ours_t = best["deepaudit PGD"]
    print(f"  speed-up vs ART               : {best['ART PyTorch PGD'] / ours_t:8.2f}x")
    print(f"  deepaudit / bare (naive)      : {ours_t / best['bare fwd+bwd (naive)']:8.2f}x")
    print(f"  deepaudit / bare (frozen)     : {ours_t / best['bare fwd+bwd (frozen params)']:8.2f}x")


if __name__ == "__main__":
    main()
