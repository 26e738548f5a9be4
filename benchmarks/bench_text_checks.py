"""Benchmark: the text checks with and without the memoising text scorer (audit/text_scorer.py), in one run.

Runs the ``explanations`` check (LIME, KernelSHAP over words, IG and Saliency on embeddings, the
deletion and insertion curves and the randomised-model sanity re-run) and the text path of the
``adversarial`` check (greedy character edits) on the same model, texts and seed twice: as the
audit runs them (each unique text scored once per check and model state) and with the scorer's
cache switched off (every text asked for goes to the model, as before the scorer). Prints the time
of each, how many texts the model scored, and the largest difference between the two runs' metrics.
Each check runs once untimed first (imports, first-call costs).

    python benchmarks/bench_text_checks.py --text-model tiny-bert
    python benchmarks/bench_text_checks.py --text-model minilm --text-words 8-16 --n-explain 6
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "assets"))

from audit import text_scorer  # noqa: E402
from audit.checks import adversarial, explanations  # noqa: E402
from audit.context import AuditContext  # noqa: E402
from audit.data import AuditDataset  # noqa: E402
from models.adapter import HFTextAdapter  # noqa: E402


class CountingAdapter(HFTextAdapter):
    """An HF text adapter that counts the texts its model scores (shared with its randomised copies)."""

    scored = 0

    def logits(self, inputs: Sequence[str]) -> torch.Tensor:
        CountingAdapter.scored += len(inputs)
        return super().logits(inputs)


def _model(kind: str) -> tuple[Any, Any]:
    if kind == "minilm":
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        from models.architectures.hf import minilm_path, minilm_tokenizer

        hf_logging.set_verbosity_error()
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(str(minilm_path()), num_labels=2,
                                                                   local_files_only=True).eval()
        return model, minilm_tokenizer(128)
    from tiny_text import tiny_bert

    return tiny_bert()


def _run(check: Any, adapter: HFTextAdapter, texts: list[str], y: np.ndarray, batch_size: int,
         clock: Any = time.perf_counter) -> tuple[float, int, dict]:
    ds = AuditDataset(name="eval", inputs=texts, target=y, class_names=None, sensitive_features=None,
                      feature_names=None, input_kind="text", path="mem", format="csv", sha256="0")
    ctx = AuditContext(adapter, {"eval": ds}, seed=0, batch_size=batch_size)
    ctx.probs()  # the context's predictions are shared by every check: not this check's work
    CountingAdapter.scored = 0
    start = clock()
    out = check.run(ctx)
    seconds = clock() - start
    return seconds, CountingAdapter.scored, {(m.name, m.group): m.value for m in out.metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-model", choices=["tiny-bert", "minilm"], default="tiny-bert")
    parser.add_argument("--text-words", default="2-6", help="words per sentence, MIN-MAX")
    parser.add_argument("--n-texts", type=int, default=200, help="texts in the evaluation set")
    parser.add_argument("--n-explain", type=int, default=12)
    parser.add_argument("--n-attack", type=int, default=64, help="texts the character-edit search attacks")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)  # Captum's "did not already require gradients"
    from tiny_text import WORDS

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    model, tok = _model(args.text_model)
    adapter = CountingAdapter(model, tok, device=torch.device("cpu"))
    lo, hi = (int(v) for v in args.text_words.split("-"))
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, int(rng.integers(lo, hi + 1)))) for _ in range(args.n_texts)]
    y = adapter.predict_logits(texts, batch_size=args.batch_size).argmax(1).numpy()  # every text starts correct
    checks = {
        "explanations (text)": (explanations, explanations.Explanations(explanations.ExplanationsConfig(
            max_samples=args.n_explain))),
        "adversarial (character edits)": (adversarial, adversarial.AdversarialRobustness(adversarial.AdversarialConfig(
            max_samples=args.n_attack))),
    }
    print(f"{args.text_model}, {args.n_texts} texts of {lo}-{hi} words, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}; one timed run of each, {args.clock} clock")
    print(f"{'check':32s} {'no cache':>9s} {'cache':>9s} {'speed-up':>8s}  {'texts scored (no cache → cache)':>32s}  "
          "max |metric difference|")
    for name, (module, check) in checks.items():
        _run(check, adapter, texts[:20], y[:20], args.batch_size)  # warm-up
        plain_cls = module.TextScorer
        module.TextScorer = functools.partial(text_scorer.TextScorer, cache=False)
        try:
            t_plain, n_plain, m_plain = _run(check, adapter, texts, y, args.batch_size, clock)
        finally:
            module.TextScorer = plain_cls
        t_cache, n_cache, m_cache = _run(check, adapter, texts, y, args.batch_size, clock)
        diff = max((abs(m_cache[k] - v) for k, v in m_plain.items() if v is not None and m_cache.get(k) is not None),
                   default=0.0)
        print(f"{name:32s} {t_plain:8.2f}s {t_cache:8.2f}s {t_plain / t_cache:7.2f}×  "
              f"{n_plain:>14d} → {n_cache:<15d}  {diff:.2e}")


if __name__ == "__main__":
    main()
