"""The torch-native PGD's fused L∞ step against the step-project-clip it replaces, and its frozen parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audit.attacks import _random_start, fgsm, frozen_parameters, pgd, project


def reference_linf_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step_size: float,
                       clip: tuple[float, float] | None) -> torch.Tensor:
    """PGD written out plainly: signed step on δ, projection onto the ε-ball, then clipping to the range."""
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x + delta), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, delta)
        delta = project(delta.detach() + step_size * g.sign(), eps, "linf")
        if clip is not None:
            delta = (x + delta).clamp(*clip) - x
    return x + delta


@pytest.mark.parametrize("clip", [(0.0, 1.0), None])
def test_fused_linf_step_equals_step_project_clip(clip) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.rand(64, 6)
    x[:4] = torch.tensor([-0.5, 1.5, 1.05, -0.02]).view(4, 1)  # some inputs outside the range, near and far
    y = torch.randint(0, 3, (64,))
    ours = pgd(model, x, y, eps=0.1, steps=5, step_size=0.04, random_start=False, clip=clip)
    ref = reference_linf_pgd(model, x, y, 0.1, 5, 0.04, clip)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    if clip is not None:
        inside = ((x >= 0) & (x <= 1)).all(1)
        assert ((ours[inside] - x[inside]).abs() <= 0.1 + 1e-6).all()
        assert ours.min() >= 0 and ours.max() <= 1


def test_parameters_are_frozen_during_the_attack_and_restored() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model[0].bias.requires_grad_(False)  # a parameter frozen by the user stays frozen
    with frozen_parameters(model):
        assert not any(p.requires_grad for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == [True, False, True, True]
    pgd(model, torch.rand(8, 4), torch.randint(0, 2, (8,)), eps=0.1, steps=3)
    assert all(p.grad is None for p in model.parameters())  # only the input gradient was computed
    assert [p.requires_grad for p in model.parameters()] == [True, False, True, True]


def test_adapter_logits_freeze_the_adapters_model() -> None:
    from models.adapter import Normalize, TorchAdapter

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    adapter = TorchAdapter(model, input_kind="tabular", device=torch.device("cpu"), preprocess=Normalize([0.5], [0.5]))
    with frozen_parameters(adapter.logits):
        assert not any(p.requires_grad for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


# ------------------------------------------------------- random starts, defaults and restarts, pinned exactly


def reference_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, steps: int,
                  step_size: float, start: torch.Tensor | None, clip: tuple[float, float] | None) -> torch.Tensor:
    """PGD from a given start, written out plainly: step (signed for L∞, normalised for L2), project, clip."""
    delta = torch.zeros_like(x) if start is None else start.clone()
    if clip is not None:
        delta = (x + delta).clamp(*clip) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x + delta), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, delta)
        step = g.sign() if norm == "linf" else g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (g.dim() - 1))
        delta = project(delta.detach() + step_size * step, eps, norm)
        if clip is not None:
            delta = (x + delta).clamp(*clip) - x
    return x + delta


def mlp_and_data(n: int = 48, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.rand(n, 6)
    return model, x, model(x).argmax(1).detach()  # labels the model gets right: only attacks fool it


@pytest.mark.parametrize("clip", [(0.0, 1.0), None])
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.4)])
def test_pgd_from_a_random_start_equals_the_plain_reference(norm: str, eps: float, clip) -> None:
    model, x, y = mlp_and_data()
    ours = pgd(model, x, y, eps=eps, norm=norm, steps=4, step_size=eps / 3, clip=clip,
               generator=torch.Generator().manual_seed(7))
    start = _random_start(x, eps, norm, torch.Generator().manual_seed(7))
    torch.testing.assert_close(ours, reference_pgd(model, x, y, eps, norm, 4, eps / 3, start, clip), atol=1e-6, rtol=0)
    assert not torch.equal(ours, reference_pgd(model, x, y, eps, norm, 4, eps / 3, None, clip))  # the start matters


def test_pgd_defaults_are_ten_steps_of_a_quarter_eps_from_a_start_seeded_with_zero() -> None:
    model, x, y = mlp_and_data()
    ours = pgd(model, x, y, eps=0.1)
    assert torch.equal(ours, pgd(model, x, y, eps=0.1))  # reproducible without a generator
    start = _random_start(x, 0.1, "linf", torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours, reference_pgd(model, x, y, 0.1, "linf", 10, 0.025, start, None), atol=1e-6, rtol=0)


@pytest.mark.parametrize("restarts", [2, 3])
def test_restarts_keep_the_first_perturbation_that_fools_each_sample(restarts: int) -> None:
    model, x, y = mlp_and_data(n=400)
    eps, steps = 0.06, 1
    gen = torch.Generator().manual_seed(11)
    advs = [reference_pgd(model, x, y, eps, "linf", steps, eps / 2, _random_start(x, eps, "linf", gen), None)
            for _ in range(restarts)]
    with torch.no_grad():
        fooled = [model(a).argmax(1) != y for a in advs]
    expected, done = advs[0].clone(), fooled[0].clone()
    for a, f in zip(advs[1:], fooled[1:]):
        take = f & ~done
        expected[take] = a[take]
        done |= f
    # the case is informative: a later start fools samples the first did not, and some samples are never fooled
    assert (done & ~fooled[0]).any() and (~done).any() and fooled[0].any()
    if restarts == 3:  # a sample fooled by the first start, not the second, again by the third keeps the first
        assert (fooled[0] & ~fooled[1] & fooled[2]).any()
    ours = pgd(model, x, y, eps=eps, steps=steps, step_size=eps / 2, restarts=restarts,
               generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


def test_random_start_linf_is_uniform_in_the_box_seeded_and_keeps_the_dtype() -> None:
    x = torch.zeros(20000, 3, dtype=torch.float64)
    s = _random_start(x, 0.2, "linf", torch.Generator().manual_seed(1))
    assert s.dtype == torch.float64
    assert torch.equal(s, _random_start(x, 0.2, "linf", torch.Generator().manual_seed(1)))
    assert float(s.abs().max()) <= 0.2 and float(s.min()) < -0.199 and float(s.max()) > 0.199
    assert abs(float(s.mean())) < 0.005 and float(s.std()) == pytest.approx(0.2 / 3**0.5, rel=0.02)


@pytest.mark.parametrize("shape", [(20000, 2), (20000, 1, 2, 2)])
def test_random_start_l2_is_uniform_in_the_ball(shape: tuple[int, ...]) -> None:
    """Uniform in the d-ball of radius ε: P(|s| ≤ r) = (r/ε)^d, so the mean norm is ε d / (d + 1)."""
    x = torch.zeros(shape, dtype=torch.float64)
    d = x[0].numel()
    s = _random_start(x, 0.5, "l2", torch.Generator().manual_seed(2))
    assert s.dtype == torch.float64 and s.shape == x.shape
    assert torch.equal(s, _random_start(x, 0.5, "l2", torch.Generator().manual_seed(2)))
    norms = s.flatten(1).norm(dim=1)
    assert float(norms.max()) <= 0.5 + 1e-12
    assert float(norms.mean()) == pytest.approx(0.5 * d / (d + 1), rel=0.02)
    assert float((norms <= 0.25).double().mean()) == pytest.approx(0.5**d, abs=0.015)
    assert float(s.flatten(1).mean(0).abs().max()) < 0.01  # no preferred direction
    one = _random_start(torch.zeros(1, 3), 0.5, "l2", torch.Generator().manual_seed(0))  # a batch of one
    assert one.shape == (1, 3) and 0 < float(one.norm()) <= 0.5


def test_fgsm_defaults_to_linf_and_equals_one_full_signed_step() -> None:
    model, x, y = mlp_and_data()
    ours = fgsm(model, x, y, eps=0.1)
    torch.testing.assert_close(ours, reference_pgd(model, x, y, 0.1, "linf", 1, 0.1, None, None), atol=1e-6, rtol=0)
    assert torch.equal(ours, fgsm(model, x, y, eps=0.1, norm="linf"))


def test_random_start_keeps_a_half_precision_dtype() -> None:
    """A bf16 model gets a bf16 start: a float32 start would promote its inputs to float32."""
    x = torch.zeros(8, 5, dtype=torch.bfloat16)
    for norm in ("linf", "l2"):
        assert _random_start(x, 0.5, norm, torch.Generator().manual_seed(0)).dtype == torch.bfloat16


def test_l2_projection_shrinks_only_what_is_outside_the_ball() -> None:
    delta = torch.tensor([[0.3, 0.4], [3.0, 4.0], [0.0, 0.0]])
    out = project(delta, 1.0, "l2")
    torch.testing.assert_close(out, torch.tensor([[0.3, 0.4], [0.6, 0.8], [0.0, 0.0]]))
    torch.testing.assert_close(project(delta, 0.5, "linf"), torch.tensor([[0.3, 0.4], [0.5, 0.5], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="'norm' parameter of project must be 'linf' or 'l2'. Got 'L2'"):
        project(delta, 1.0, "L2")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_zero_eps_returns_the_inputs_untouched_even_outside_the_range(norm: str) -> None:
    model, x, y = mlp_and_data()
    x = x * 3 - 1  # partly outside the clip range
    assert torch.equal(pgd(model, x, y, eps=0.0, norm=norm, clip=(0.0, 1.0)), x)


def test_parameters_are_frozen_while_the_model_runs_inside_the_attack() -> None:
    class Recording(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(4, 2)
            self.seen: list[bool] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(any(p.requires_grad for p in self.parameters()))
            return self.inner(x)

    model = Recording()
    pgd(model, torch.rand(8, 4), torch.randint(0, 2, (8,)), eps=0.1, steps=3)
    assert model.seen == [False, False, False] and all(p.requires_grad for p in model.parameters())


def test_a_plain_function_and_an_adapter_with_trainable_preprocessing_are_attacked() -> None:
    from models.adapter import TorchAdapter

    model, x, y = mlp_and_data()
    adv = pgd(lambda t: model(t), x, y, eps=0.1, steps=2)  # a plain callable: nothing to freeze, still attacked
    torch.testing.assert_close(adv, pgd(model, x, y, eps=0.1, steps=2))
    pre = nn.Linear(6, 6)
    adapter = TorchAdapter(model, input_kind="tabular", device=torch.device("cpu"), preprocess=pre)
    with frozen_parameters(adapter.logits):
        assert not any(p.requires_grad for p in pre.parameters())
    assert all(p.requires_grad for p in pre.parameters())


# ------------------------------------------------------------------------------ the text attack


def edit_kind(word: str, out: str) -> str:
    """Which single-character edit turns ``word`` into ``out``: swap, delete, insert (or '?')."""
    if len(out) == len(word) + 1 and any(out[:i] + out[i + 1 :] == word and out[i].islower() for i in range(len(out))):
        return "insert"
    if len(out) == len(word) - 1 and any(word[:i] + word[i + 1 :] == out for i in range(len(word))):
        return "delete"
    if len(out) == len(word) and any(word[:i] + word[i + 1] + word[i] + word[i + 2 :] == out for i in range(len(word) - 1)):
        return "swap"
    return "?"


def test_char_edit_makes_one_swap_deletion_or_lowercase_insertion_anywhere() -> None:
    import numpy as np

    from audit.attacks import _char_edit

    rng = np.random.default_rng(0)
    word = "abcdef"
    outs = [_char_edit(word, rng) for _ in range(3000)]
    kinds = [edit_kind(word, o) for o in outs]
    assert "?" not in kinds and {"swap", "delete", "insert"} == set(kinds)
    inserted = {o[i] for o in outs if len(o) == 7 for i in range(7) if o[:i] + o[i + 1 :] == word}
    assert {"a", "z"} <= inserted <= set("abcdefghijklmnopqrstuvwxyz")
    # every position can be edited: the first and the last character are deleted, the first pair swapped
    deleted = {o for o in outs if len(o) == 5}
    assert "bcdef" in deleted and "abcde" in deleted and "bacdef" in outs and "abcdfe" in outs
    assert any(o.startswith(c) for o in outs for c in "ghijklmnopqrstuvwxyz")  # insertion before the first letter
    # each operation a third of the time; a swap drawn at the last letter becomes an insertion
    share = {k: kinds.count(k) / len(kinds) for k in ("swap", "delete", "insert")}
    assert share == pytest.approx({"swap": 5 / 18, "delete": 1 / 3, "insert": 7 / 18}, abs=0.035)
    assert {edit_kind("ab", _char_edit("ab", rng)) for _ in range(200)} == {"swap", "delete", "insert"}
    # a one-letter word can only grow; the empty word stays empty
    assert {len(_char_edit("a", rng)) for _ in range(50)} == {2}
    assert _char_edit("", rng) == ""
    again = np.random.default_rng(0)
    assert [_char_edit(word, again) for _ in range(3000)] == outs


class Graded:
    """P(positive) = 0.95 - 0.1 per character beyond the fifth: every insertion lowers it, every deletion raises
    it and a swap keeps it, so which edit the greedy search keeps is visible in the text's length."""

    def __call__(self, texts: list[str]):  # noqa: ANN204
        import numpy as np

        p = np.array([max(0.0, min(1.0, 0.95 - 0.1 * max(0, len(t) - 5))) for t in texts])
        return np.stack([1 - p, p], 1)


def test_char_edit_attack_edits_until_the_prediction_flips_within_the_budget() -> None:
    import numpy as np

    from audit.attacks import char_edit_attack

    # "goodgo" (6 characters): P(pos) 0.85; one insertion makes it 0.75 ... it needs 4 insertions to fall below 0.5;
    # deletions raise it. The greedy search must pick insertions (the edit that lowers P(pos) most) every round.
    texts, labels = ["goodgo", "goodgo", "abcdefghijkl"], np.array([1, 1, 1])
    adv, edits, _ = char_edit_attack(Graded(), texts, labels, budget=4, candidates=24, seed=0)
    assert len(adv[0]) == 10 and list(edits) == [4, 4, 0]  # the third was already wrong
    assert adv[2] == texts[2]
    assert Graded()(adv[:1])[0].argmax() == 0  # flipped after exactly 4 edits
    short, n_short, _ = char_edit_attack(Graded(), texts[:1], labels[:1], budget=3, candidates=24, seed=0)
    assert len(short[0]) == 9 and list(n_short) == [3]  # the budget stops it before the flip
    # once flipped, a text is not edited further
    long, n_long, _ = char_edit_attack(Graded(), texts[:1], labels[:1], budget=8, candidates=24, seed=0)
    assert list(n_long) == [4] and len(long[0]) == 10
    assert edits.dtype.kind == "i"
    # seeded: the same seed gives the same texts, and the defaults are 3 edits of 16 candidates with seed 0
    assert char_edit_attack(Graded(), texts, labels, budget=4, candidates=24, seed=0)[0] == adv
    default, n_default, _ = char_edit_attack(Graded(), texts, labels)
    explicit, n_explicit, _ = char_edit_attack(Graded(), texts, labels, budget=3, candidates=16, seed=0)
    assert default == explicit and list(n_default) == list(n_explicit) == [3, 3, 0]


class ThreeLowercaseWords:
    """Positive iff the text is exactly three lowercase words separated by single spaces."""

    def __call__(self, texts: list[str]):  # noqa: ANN204
        import re

        import numpy as np

        p = np.array([0.9 if re.fullmatch(r"[a-z]+( [a-z]+){2}", t) else 0.1 for t in texts])
        return np.stack([1 - p, p], 1)


def test_char_edit_attack_edits_inside_words_and_keeps_the_rest_of_the_text() -> None:
    """Edits never touch the spaces between words or add anything but lowercase letters, so a model that only
    checks the word structure cannot be flipped with 3 edits of 4-letter words; other whitespace is kept."""
    import numpy as np

    from audit.attacks import char_edit_attack

    adv, edits, _ = char_edit_attack(ThreeLowercaseWords(), ["abcd goodx films"], np.array([1]), budget=3, candidates=32)
    assert list(edits) == [3] and adv[0].count(" ") == 2 and ThreeLowercaseWords()(adv)[0].argmax() == 1
    kept, n_kept, _ = char_edit_attack(Graded(), ["go\nx  z"], np.array([1]), budget=2, candidates=8)
    assert list(n_kept) == [2] and kept[0].count("\n") == 1 and "  " in kept[0] and len(kept[0]) == len("go\nx  z") + 2
