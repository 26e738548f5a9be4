"""Benchmark: the tweets demo's text ``adversarial`` check (``char_edit`` and ``pwws`` on the demo's BiLSTM,
256 tweets), run twice in one process as ``deepaudit compare`` and repeated audits do (``--uncached``: as before the
encoder and WordNet were cached per process), with the CPU seconds of each run and of its parts: loading the MiniLM sentence encoder and WordNet's index (once per process since
they are cached), the sentence encoder's embeddings (the PWWS similarity constraint), the model's scoring.
The two runs' metrics are checked equal.

    python benchmarks/bench_text_demo.py            # trains the demo model on first use (cached)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit import text_attacks, wordnet  # noqa: E402
from audit.demo import demo_config  # noqa: E402
from audit.runner import run_audit  # noqa: E402
from audit.text_scorer import TextScorer  # noqa: E402

SPENT: dict[str, float] = defaultdict(float)


def timed(owner: Any, name: str, label: str) -> None:
    """Add the CPU seconds of ``owner.name`` to ``SPENT[label]`` (outermost calls only)."""
    fn: Callable[..., Any] = getattr(owner, name)
    depth = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth[0] += 1
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                SPENT[label] += time.process_time() - start

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--uncached", action="store_true",
                        help="forget the encoder and WordNet before each run (as every audit did before they were cached)")
    args = parser.parse_args()
    forget = (text_attacks._load_encoder.cache_clear, wordnet._reader.cache_clear)
    timed(text_attacks, "_load_encoder", "load sentence encoder")
    timed(wordnet.WordNet, "_load_index", "WordNet index")
    timed(text_attacks.SentenceSimilarity, "embed", "sentence embeddings")
    timed(TextScorer, "_score", "model scoring")
    results = []
    with tempfile.TemporaryDirectory() as out:
        cfg = demo_config(Path(out), name="tweets", sets=["threads=1", "energy.track=false", "select=adversarial"])
        for run in range(1, args.runs + 1):
            SPENT.clear()
            if args.uncached:
                for clear in forget:
                    clear()
            start = time.process_time()
            result = run_audit(cfg)
            total = time.process_time() - start
            check = next(c for c in result.checks if c.id == "adversarial")
            results.append([m.model_dump() for m in check.metrics])
            print(f"run {run}: audit {total:.1f} CPU-s, adversarial check {check.duration_s:.1f} s wall; "
                  + ", ".join(f"{k} {v:.1f}" for k, v in SPENT.items()))
    print("cached per process:", not args.uncached)
    print("metrics equal across runs:", all(r == results[0] for r in results))


if __name__ == "__main__":
    main()
