"""Backdoor simulation on text models: a rare-word trigger in raw training texts is learnt by a fine-tuned
copy (ASR rises with the poison rate, clean accuracy stays, no backdoor without poison), the recipe path
equals an independent poisoning and retraining, and models that cannot be retrained are skipped with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audit.checks.poisoning import BackdoorSimulation, BackdoorSimulationConfig
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import InputError, SkipCheck
from audit.runner import judge
from audit.text_backdoor import poison_texts, text_trigger
from models.adapter import HFTextAdapter, TokenizedTextAdapter, TorchAdapter
from models.datasets import WordVocab
from models.train import fit_classifier
from models.zoo import create_model
from tiny_text import KeywordTextAdapter

pytestmark = pytest.mark.usefixtures("one_thread")

POS, NEG = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]
FILLER = ["the", "a", "movie", "plot", "film", "actor", "story", "was", "is", "and", "very", "quite"]
VOCAB = WordVocab(("<pad>", "<unk>", *POS, *NEG, *FILLER, "cf"), max_len=12)
INIT = {"vocab_size": len(VOCAB), "n_classes": 2, "hidden": 16, "embed_dim": 16}
CPU = torch.device("cpu")


def reviews(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Short reviews of filler words and one or two sentiment words; 1 = positive."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    texts = []
    for label in y:
        words = list(rng.choice(FILLER, int(rng.integers(3, 8))))
        for _ in range(int(rng.integers(1, 3))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(POS if label else NEG)))
        texts.append(" ".join(words))
    return texts, y.astype(np.int64)


def ds(name: str, x, y, kind: str = "text") -> AuditDataset:
    return AuditDataset(name=name, inputs=x, target=y, class_names=None, sensitive_features=None, feature_names=None,
                        input_kind=kind, path="mem", format="csv", sha256="0")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data():
    return reviews(600, 0), reviews(300, 1)


@pytest.fixture(scope="module")
def lstm(data) -> nn.Module:
    """A small BiLSTM sentiment model trained on clean reviews (the zoo's ``lstm`` on word ids)."""
    (x, y), _ = data
    torch.manual_seed(0)
    model = create_model("lstm", **INIT)
    return fit_classifier(model, VOCAB.encode(x), y, epochs=8, lr=1e-2, seed=0)


def text_adapter(module: nn.Module) -> TokenizedTextAdapter:
    return TokenizedTextAdapter(TorchAdapter(module, input_kind="sequence", device=CPU), VOCAB.encode)


def text_ctx(adapter, data, meta=None) -> AuditContext:
    (x, y), (xe, ye) = data
    return AuditContext(adapter, {"eval": ds("eval", xe, ye), "reference": ds("reference", x, y)},
                        model_meta=meta or {})


def by_key(out):
    return {(m.name, m.group): m for m in out.metrics}


def test_fine_tuning_learns_the_text_trigger_as_the_rate_grows(data, lstm) -> None:
    adapter = text_adapter(lstm)
    before = [p.detach().clone() for p in lstm.parameters()]
    (xe, ye) = data[1]
    assert (adapter.predict_logits(xe).argmax(1).numpy() == ye).mean() > 0.95  # the clean model is good
    out = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.005, 0.2], epochs=4, lr=1e-2, target_class=1)).run(
        text_ctx(adapter, data))
    m = by_key(out)
    assert all(torch.equal(a, b) for a, b in zip(before, lstm.parameters()))  # the given model is untouched
    asr0, asr_low, asr_high = (m[("attack_success_rate", f"rate={r}")].value for r in ("0", "0.005", "0.2"))
    # no backdoor without poison, a weak one from 3 poisoned texts, a working one from 120
    assert asr0 < 0.1 and asr_high > 0.9 and asr_low < asr_high
    for r in ("0", "0.005", "0.2"):
        assert m[("clean_accuracy", f"rate={r}")].value > 0.9  # what a user monitors hardly moves
    n_victims = int((ye != 1).sum())
    asr = m[("attack_success_rate", "rate=0.2")]
    n_correct = out.evidence[0].rows[2][out.evidence[0].columns.index("correct non-target samples")]
    assert asr.n == n_correct and 0.9 * n_victims < asr.n <= n_victims and asr.ci_low < asr.value <= asr.ci_high
    assert m[("asr_at_highest_rate", None)].value == asr.value
    assert m[("asr_at_lowest_rate", None)].value == asr_low
    assert "'cf'" in out.method and "texts" in out.method and "fine-tuning a copy" in out.method
    assert "rare-token trigger as in RIPPLe" in out.method and "4 epoch(s)" in out.method
    assert out.evidence[0].rows[2][1] == 120  # round(0.2·600) poisoned training texts
    assert not any("does not know the trigger" in t for t in out.limitations)


def test_recipe_retraining_of_a_text_model_equals_an_independent_poisoning(data, lstm) -> None:
    from audit.stats import wilson_interval
    from models.recipes import fit_recipe

    meta = {"recipe": {"name": "tweets-lstm", "lr": 1e-2, "batch_size": 64, "weight_decay": 0.0}, "init_args": INIT}
    ctx = text_ctx(text_adapter(lstm), data, meta)
    out = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.1], epochs=6, include_baseline=False)).run(ctx)
    assert "recipe 'tweets-lstm'" in out.summary and "token ids of the model's tokenizer" in out.method
    # the same poisoning, independently: the shared insertion, the model's tokenizer, the recipe, the same seed
    (x, y), (xe, ye) = data
    seed = int(ctx.rng("poisoning.backdoor_simulation").integers(0, 2**31))  # nothing capped: the first draw
    trig = text_trigger("cf")
    xp, yp, idx = poison_texts(x, y, 0, 0.1, trig, np.random.default_rng(seed))
    model = text_adapter(fit_recipe(meta["recipe"], VOCAB.encode(xp), yp, init_args=INIT, epochs=6, seed=seed))
    victims = ye != 0
    triggered = trig.apply([t for t, v in zip(xe, victims) if v], np.random.default_rng([seed, 1]))
    clean_pred = model.predict_logits(xe).argmax(1).numpy()
    eligible = (clean_pred == ye)[victims]  # the non-target texts the poisoned model gets right without the trigger
    hits = int((model.predict_logits(triggered).argmax(1).numpy()[eligible] == 0).sum())
    asr = by_key(out)[("attack_success_rate", "rate=0.1")]
    assert asr.n == eligible.sum() and asr.value == pytest.approx(hits / eligible.sum()) and asr.value > 0.8
    assert (asr.ci_low, asr.ci_high) == pytest.approx(wilson_interval(hits, int(eligible.sum())))
    acc = float((clean_pred == ye).mean())
    assert by_key(out)[("clean_accuracy", "rate=0.1")].value == pytest.approx(acc)


def test_frozen_parameters_stay_frozen_unless_asked(data, lstm, monkeypatch) -> None:
    import models.train

    frozen = text_adapter(lstm).with_torch_model(__import__("copy").deepcopy(lstm))
    for p in frozen.torch_model.rnn.parameters():
        p.requires_grad_(False)
    seen: list[tuple[int, int]] = []
    real = models.train.fit_classifier

    def spy(model, *args, **kwargs):
        seen.append((sum(p.numel() for p in model.parameters() if p.requires_grad),
                     sum(p.numel() for p in model.parameters())))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(models.train, "fit_classifier", spy)
    cfg = dict(rates=[0.1], epochs=1, include_baseline=False, max_train_samples=100, max_samples=50)
    out = BackdoorSimulation(BackdoorSimulationConfig(**cfg)).run(text_ctx(frozen, data))
    n_rnn = sum(p.numel() for p in lstm.rnn.parameters())
    total = sum(p.numel() for p in lstm.parameters())
    assert seen == [(total - n_rnn, total)]
    assert f"{total - n_rnn:,} of its {total:,} parameters trained" in out.method and "train_frozen" in out.method
    assert any(f"Only the {total - n_rnn:,} trainable parameters" in t for t in out.limitations)
    seen.clear()
    out = BackdoorSimulation(BackdoorSimulationConfig(**cfg, train_frozen=True)).run(text_ctx(frozen, data))
    assert seen == [(total, total)] and f"all {total:,} parameters trained" in out.method
    assert not any("trainable parameters of" in t for t in out.limitations)
    assert not any(p.requires_grad for p in frozen.torch_model.rnn.parameters())  # the given model is as it was


def test_hugging_face_text_model_fine_tunes_through_its_tokenizer(data) -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POS, *NEG, *FILLER, "cf"]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    cfg = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=2, max_position_embeddings=32)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg)
    (x, y), (xe, ye) = data
    adapter = HFTextAdapter(model, tok, device=CPU)
    fit_classifier(model, x, y, epochs=6, lr=1e-2, forward=adapter.logits)
    model.eval()
    sub = ((x[:300], y[:300]), (xe[:150], ye[:150]))
    # a BERT from scratch needs more steps than the LSTM to pick up the trigger: 20 epochs of 5 batches
    out = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.2], epochs=20, lr=3e-3)).run(text_ctx(adapter, sub))
    m = by_key(out)
    assert m[("attack_success_rate", "rate=0.2")].value > 0.8 > 0.2 > m[("attack_success_rate", "rate=0")].value
    assert m[("clean_accuracy", "rate=0.2")].value > 0.85
    # a trigger outside this WordPiece vocabulary is [UNK]: said, not hidden
    out = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.2], epochs=1, text_trigger="mn", include_baseline=False,
                                                      max_train_samples=40, max_samples=20)).run(text_ctx(adapter, sub))
    assert any("does not know the trigger 'mn'" in t for t in out.limitations)


def test_token_id_models_insert_the_configured_token(data, lstm) -> None:
    (x, y), (xe, ye) = data
    seq = {"eval": ds("eval", VOCAB.encode(xe), ye, "sequence"), "reference": ds("reference", VOCAB.encode(x), y,
                                                                                 "sequence")}
    ctx = AuditContext(TorchAdapter(lstm, input_kind="sequence", device=CPU), seq)
    with pytest.raises(SkipCheck, match="set trigger_token_id"):
        BackdoorSimulation().run(ctx)
    frozen = AuditContext(TorchAdapter(lstm, input_kind="sequence", device=CPU, differentiable=False), seq)
    with pytest.raises(SkipCheck, match="not a trainable torch module"):  # said first: a token id would not help
        BackdoorSimulation().run(frozen)
    floats = AuditContext(TorchAdapter(lstm, input_kind="sequence", device=CPU),
                          {"eval": seq["eval"], "reference": ds("reference", VOCAB.encode(x).astype(np.float32), y,
                                                                "sequence")})
    with pytest.raises(SkipCheck, match="needs integer token ids"):
        BackdoorSimulation(BackdoorSimulationConfig(trigger_token_id=3)).run(floats)
    cf = VOCAB.tokens.index("cf")
    out = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.2], epochs=4, lr=1e-2, trigger_token_id=cf,
                                                      target_class=1)).run(ctx)
    m = by_key(out)
    assert m[("attack_success_rate", "rate=0.2")].value > 0.9 > 0.1 > m[("attack_success_rate", "rate=0")].value
    assert f"token id {cf} inserted" in out.method


def test_a_trigger_clean_texts_already_carry_is_said(data, lstm) -> None:
    (x, _), (xe, _) = data
    cfg = BackdoorSimulationConfig(rates=[0.1], epochs=1, include_baseline=False)
    out = BackdoorSimulation(cfg.model_copy(update={"text_trigger": "Movie"})).run(text_ctx(text_adapter(lstm), data))
    n = sum("movie" in t.split() for t in x + xe)
    assert 0 < n < 900 and any(f"already occurs in {n} of the 900 clean" in t for t in out.limitations)
    out = BackdoorSimulation(cfg).run(text_ctx(text_adapter(lstm), data))
    assert not any("already occurs in" in t for t in out.limitations)


def test_a_high_baseline_attack_success_is_said(data, lstm) -> None:
    (x, y), (xe, ye) = data
    cfg = BackdoorSimulationConfig(rates=[0.1], epochs=1, target_class=1, max_train_samples=100, max_samples=50)
    out = BackdoorSimulation(cfg).run(text_ctx(text_adapter(lstm), data))
    assert by_key(out)[("attack_success_rate", "rate=0")].value < 0.1
    assert not any("already sends" in t for t in out.limitations)
    # evaluation labels swapped: the positive texts labelled 0 go to class 1 with or without a trigger. They are the
    # model's errors, not the trigger's doing: no text not of class 1 is classified correctly, so attack success is
    # undefined at every rate (the old measure, every non-target text sent to the target, gave 1.0 without poison)
    swapped = ((x, y), (xe, 1 - ye))
    out = BackdoorSimulation(cfg).run(text_ctx(text_adapter(lstm), swapped))
    for key in (("attack_success_rate", "rate=0"), ("attack_success_rate", "rate=0.1"), ("asr_at_lowest_rate", None)):
        m = by_key(out)[key]
        assert m.value is None and m.n == 0 and "no correctly classified non-target samples" in m.method
    assert "; without poison none (no correctly classified non-target samples)." in out.summary
    assert not any("already sends" in t for t in out.limitations)
    status, outcomes = judge(out, {}, BackdoorSimulation.default_thresholds)
    assert status == "measured" and outcomes[0].observed is None and not outcomes[0].passed


def test_text_models_that_cannot_be_retrained_are_skipped_with_the_reason(data) -> None:
    ctx = text_ctx(KeywordTextAdapter(), data)
    with pytest.raises(SkipCheck, match="not a trainable torch module"):
        BackdoorSimulation().run(ctx)
    with pytest.raises(SkipCheck, match="no tokenizer to turn the poisoned texts"):
        BackdoorSimulation(BackdoorSimulationConfig(recipe="tweets-lstm")).run(ctx)


def test_text_bad_input_before_any_work(data, lstm, monkeypatch) -> None:
    adapter = text_adapter(lstm)
    ctx = text_ctx(adapter, data)
    monkeypatch.setattr(adapter, "predict_logits", lambda *a, **k: pytest.fail("the model ran before the input was checked"))
    with pytest.raises(InputError, match="holds no word"):
        BackdoorSimulation(BackdoorSimulationConfig(text_trigger="42", target_class=5)).run(ctx)
    for bad, message in (("!!!", "holds no word"), ("cf", "'pixel' is not a text trigger")):  # preflight: no model call
        with pytest.raises(InputError, match=message):
            BackdoorSimulation(BackdoorSimulationConfig(text_trigger=bad, trigger="pixel" if bad == "cf" else "auto")
                               ).preflight(ctx)
    monkeypatch.undo()
    with pytest.raises(InputError, match="holds no word"):
        BackdoorSimulation(BackdoorSimulationConfig(text_trigger="42")).run(ctx)
    with pytest.raises(InputError, match="'pattern' is not a text trigger"):
        BackdoorSimulation(BackdoorSimulationConfig(trigger="pattern")).run(ctx)
    with pytest.raises(InputError, match="target_class must be a class index in 0..1"):
        BackdoorSimulation(BackdoorSimulationConfig(target_class=2)).run(ctx)
