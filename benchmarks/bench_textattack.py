"""Benchmark and cross-check: our ``pwws`` recipe against TextAttack's PWWS (``PWWSRen2019``), same model, texts,
stopwords and query budget, in one run.

TextAttack is not a dependency of deepaudit and downloads NLTK data and stanza models on first import; this
script runs it offline in a throwaway environment:

    python -m venv /tmp/ta_venv   # from the project's venv, plus a .pth line pointing at its site-packages
    /tmp/ta_venv/bin/pip install --no-deps textattack nltk lru-dict terminaltables word2number num2words \
        more-itertools editdistance Levenshtein lemminflect language_tool_python jieba pinyin OpenHowNet \
        bert-score langdetect anytree toml
    NLTK_DATA=/tmp/nltk_data TA_CACHE_DIR=/tmp/ta_cache /tmp/ta_venv/bin/python benchmarks/bench_textattack.py

``--setup`` prepares what the first import would download: the marker file that skips TextAttack's
post-install downloads, an NLTK ``wordnet`` corpus copied from Debian's WordNet 3.0 (``wordnet-base``; the
``lexnames`` table written out, ``index.sense`` empty — sense keys are not used by PWWS), and NLTK's English
stopwords set to deepaudit's list (``audit.text_attacks.STOPWORDS``), so both attacks skip the same words.
``flair`` (imported at module level by TextAttack, used by its POS constraints, not by PWWS) is replaced by an
empty stand-in; ``nltk.download`` is made a no-op.

Differences that remain, by design: TextAttack's PWWS ranks words by probability-weighted saliency (each
word's best swap is scored before the order is fixed: more queries) and draws synonyms from every part of
speech, inflected words included; ours ranks by deletion, takes the word's most frequent part of speech and
skips inflected words. Ours runs here without its similarity constraint (TextAttack's PWWS has none).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
            "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive "
            "noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity "
            "noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition "
            "verb.communication verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
            "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl").split()


def setup(nltk_data: Path, ta_cache: Path) -> None:
    import shutil

    from audit.text_attacks import STOPWORDS
    from audit.wordnet import wordnet_dir

    ta_cache.mkdir(parents=True, exist_ok=True)
    (ta_cache / "post_install_check_3").touch()
    wn = nltk_data / "corpora" / "wordnet"
    wn.mkdir(parents=True, exist_ok=True)
    for f in wordnet_dir().iterdir():
        if f.name.startswith(("index.", "data.")) or f.suffix == ".exc":
            shutil.copy(f, wn / f.name)
    (wn / "index.sense").touch()
    kinds = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
    (wn / "lexnames").write_text("".join(f"{i:02d}\t{n}\t{kinds[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES)))
    sw = nltk_data / "corpora" / "stopwords"
    sw.mkdir(parents=True, exist_ok=True)
    (sw / "english").write_text("\n".join(sorted(STOPWORDS)) + "\n")


def import_textattack():  # noqa: ANN201
    for name in ("flair", "flair.data", "flair.models", "flair.embeddings"):
        mod = types.ModuleType(name)
        mod.__path__ = []  # type: ignore[attr-defined]
        mod.Sentence = mod.SequenceTagger = mod.Tokenizer = object  # type: ignore[attr-defined]
        sys.modules.setdefault(name, mod)
    for sub in ("data", "models", "embeddings"):
        setattr(sys.modules["flair"], sub, sys.modules[f"flair.{sub}"])
    import nltk

    nltk.download = lambda *a, **k: True  # offline: the corpora are the local copies made by --setup
    import textattack

    return textattack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=16)
    parser.add_argument("--max-queries", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--setup", action="store_true", help="write the NLTK data and TextAttack marker, then run")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    nltk_data = Path(os.environ.get("NLTK_DATA", "/tmp/nltk_data"))
    ta_cache = Path(os.environ.get("TA_CACHE_DIR", "/tmp/ta_cache"))
    os.environ["NLTK_DATA"], os.environ["TA_CACHE_DIR"] = str(nltk_data), str(ta_cache)
    if args.setup:
        setup(nltk_data, ta_cache)
    textattack = import_textattack()
    from textattack.attack_recipes import PWWSRen2019
    from textattack.attack_results import SkippedAttackResult, SuccessfulAttackResult
    from textattack.models.wrappers import ModelWrapper
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from audit.text_attacks import pwws_attack
    from audit.text_scorer import TextScorer
    from audit.text_words import changed_words
    from audit.wordnet import WordNet
    from bench_text_attacks import CountingAdapter, make_texts
    from models.architectures.hf import minilm_path, minilm_tokenizer

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(minilm_path()), num_labels=2,
                                                               local_files_only=True).eval()
    adapter = CountingAdapter(model, minilm_tokenizer(64), device=torch.device("cpu"), class_names=["neg", "pos"],
                              max_length=64)
    texts = make_texts(args.n_texts)
    labels = adapter.predict_logits(texts, batch_size=args.batch_size).argmax(1).numpy()

    class Wrapper(ModelWrapper):
        def __init__(self) -> None:
            self.model = model

        def __call__(self, text_list):  # noqa: ANN001, ANN204
            return torch.softmax(adapter.predict_logits(list(text_list), batch_size=args.batch_size), 1).numpy()

    attack = PWWSRen2019.build(Wrapper())
    attack.goal_function.query_budget = args.max_queries
    attack.goal_function.batch_size = args.batch_size
    for t, y in zip(texts[:2], labels[:2]):  # warm-up
        attack.attack(t, int(y))
    CountingAdapter.scored = 0
    start = time.perf_counter()
    ta_adv, ta_q, ta_flip = [], [], []
    for t, y in zip(texts, labels):
        res = attack.attack(t, int(y))
        ta_flip.append(isinstance(res, SuccessfulAttackResult))
        ta_adv.append(res.perturbed_result.attacked_text.text if not isinstance(res, SkippedAttackResult) else t)
        ta_q.append(res.perturbed_result.num_queries)
    ta_s, ta_scored = time.perf_counter() - start, CountingAdapter.scored

    wn = WordNet()
    scorer = TextScorer(adapter, args.batch_size)
    pwws_attack(scorer.probs, texts[:2], labels[:2], wordnet=wn, max_queries=args.max_queries)  # warm-up
    scorer = TextScorer(adapter, args.batch_size)
    CountingAdapter.scored = 0
    start = time.perf_counter()
    ours = pwws_attack(scorer.probs, texts, labels, wordnet=wn, max_queries=args.max_queries)
    our_s, our_scored = time.perf_counter() - start, CountingAdapter.scored
    our_flip = scorer.probs(ours.adversarial).argmax(1) != labels

    def share(orig: list[str], adv: list[str], flip) -> float:  # noqa: ANN001
        vals = [changed_words(o, a)[0] / changed_words(o, a)[1] for o, a, f in zip(orig, adv, flip) if f]
        return float(np.mean(vals)) if vals else float("nan")

    print(f"TextAttack {textattack.__name__} PWWSRen2019 vs deepaudit pwws (no similarity constraint), MiniLM classifier "
          f"(seeded head), {len(texts)} texts, budget {args.max_queries} queries, torch threads {torch.get_num_threads()}")
    print(f"{'':12s} {'texts/s':>8s} {'queries/text':>13s} {'scored/text':>12s} {'flip rate':>10s} {'words chg':>10s}")
    print(f"{'TextAttack':12s} {len(texts) / ta_s:8.2f} {np.mean(ta_q):13.1f} {ta_scored / len(texts):12.1f} "
          f"{np.mean(ta_flip):10.3f} {share(texts, ta_adv, ta_flip):10.3f}")
    print(f"{'deepaudit':12s} {len(texts) / our_s:8.2f} {ours.queries.mean():13.1f} {our_scored / len(texts):12.1f} "
          f"{our_flip.mean():10.3f} {share(texts, ours.adversarial, our_flip):10.3f}")
    print(f"speed ratio (deepaudit / TextAttack, texts per second): {ta_s / our_s:.2f}x; "
          f"both flipped {int(np.sum(np.array(ta_flip) & our_flip))}, only TextAttack "
          f"{int(np.sum(np.array(ta_flip) & ~our_flip))}, only deepaudit {int(np.sum(~np.array(ta_flip) & our_flip))}")


if __name__ == "__main__":
    main()
