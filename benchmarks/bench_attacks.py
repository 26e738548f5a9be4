"""Benchmark: deepaudit's torch-native PGD against ART's ProjectedGradientDescentPyTorch and a bare loop, in one run.

Same model (a LeNet-5 style CNN trained on scikit-learn's digits, or an MLP), same inputs, same
ε, step size, steps and no random start, so both compute the same attack; the script checks that
robust accuracies agree within one percentage point before it prints the speed ratio.

    python benchmarks/bench_attacks.py --n 1024 --steps 20 --device cpu
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
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    model, x, y = build(args.device)
    reps = int(np.ceil(args.n / len(x)))
    x, y = np.tile(x, (reps, 1, 1, 1))[: args.n], np.tile(y, reps)[: args.n]
    step = 2.5 * args.eps / args.steps
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    xt, yt = torch.from_numpy(x).to(args.device), torch.from_numpy(y).to(args.device)
    pgd(model, xt[:8], yt[:8], eps=args.eps, steps=2, step_size=step, random_start=False, clip=(0.0, 1.0))  # warm-up
    sync()
    t0 = time.perf_counter()
    advs = [pgd(model, xt[i : i + args.batch_size], yt[i : i + args.batch_size], eps=args.eps, steps=args.steps,
                step_size=step, random_start=False, clip=(0.0, 1.0)) for i in range(0, args.n, args.batch_size)]
    sync()
    t_ours = time.perf_counter() - t0
    with torch.no_grad():
        acc_ours = float((model(torch.cat(advs)).argmax(1) == yt).float().mean())

    # The compute bound: a bare loop of forward plus input-gradient backward passes, same batches and steps.
    t0 = time.perf_counter()
    for i in range(0, args.n, args.batch_size):
        xb, yb = xt[i : i + args.batch_size].clone(), yt[i : i + args.batch_size]
        for _ in range(args.steps):
            xb.requires_grad_(True)
            (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(xb), yb, reduction="sum"), xb)
            xb = (xb.detach() + step * g.sign()).clamp(0, 1)
    sync()
    t_bare = time.perf_counter() - t0

    clf = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=x.shape[1:], nb_classes=10,
                            clip_values=(0.0, 1.0), device_type="gpu" if args.device.startswith("cuda") else "cpu")
    attack = ProjectedGradientDescentPyTorch(clf, eps=args.eps, eps_step=step, max_iter=args.steps, num_random_init=0,
                                             batch_size=args.batch_size, verbose=False)
    t0 = time.perf_counter()
    adv_art = attack.generate(x, y=np.eye(10)[y])
    sync()
    t_art = time.perf_counter() - t0
    with torch.no_grad():
        acc_art = float((model(torch.from_numpy(adv_art).to(args.device)).argmax(1) == yt).float().mean())

    assert abs(acc_ours - acc_art) <= 0.01, (acc_ours, acc_art)
    print(f"PGD L-inf eps={args.eps}, {args.steps} steps, n={args.n}, batch {args.batch_size}, device {args.device}")
    print(f"  robust accuracy: deepaudit {acc_ours:.4f}, ART {acc_art:.4f} (agree within 1 pp)")
    print(f"  ART PyTorch PGD : {t_art:8.3f} s")
    print(f"  deepaudit PGD   : {t_ours:8.3f} s")
    print(f"  bare fwd+bwd    : {t_bare:8.3f} s  (compute bound; deepaudit is {t_ours / t_bare:.2f}x of it)")
    print(f"  speed-up        : {t_art / t_ours:8.2f}x")


if __name__ == "__main__":
    main()
