"""Each gradient-masking safeguard of the adversarial check, tripped alone by a model built for it.

The models below are constructed so that what the attacks find is known exactly. Inputs are 31
copies of a class feature (clean value below 0.2 or above 0.8; the class is whether their mean
exceeds 0.5, which random starts almost never change) and two *canaries* whose clean values are
0.25 and 0.75. ``d`` is how far the attack moved the canaries (L∞). A model is wrong exactly
when ``d`` lies in a chosen set, and its input gradient on the canaries is a chosen direction
(straight-through: the logits' values do not depend on it). With a constant direction FGSM and PGD
both move the canaries by exactly ε; with a direction that is non-zero only at the clean point PGD
(which starts at a random point) is blind while FGSM is not; with no gradient at all only random
starts and black-box attacks move anything.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from audit import masking
from audit.checks.adversarial import AdversarialConfig, AdversarialRobustness
from audit.context import AuditContext
from audit.data import AuditDataset
from models.adapter import TorchAdapter

pytestmark = pytest.mark.usefixtures("one_thread")

COPIES = 31
CLEAN = torch.tensor([0.25, 0.75])
M = 64


def const(c: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(c)


def at_clean_only(c: torch.Tensor) -> torch.Tensor:
    return ((c - CLEAN).abs() < 1e-6).float()


def zero(c: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(c)


def outward(copies: torch.Tensor) -> torch.Tensor:
    """Away from the class boundary 0.5: the attack moves the class copies, but never across."""
    return torch.sign(copies - 0.5)


class Canary(nn.Module):
    """Wrong exactly when the canaries moved by ``d`` with ``wrong(d)``; gradient ``direction`` on the canaries
    and ``copies`` on the class copies (none by default)."""

    def __init__(self, wrong: Callable[[torch.Tensor], torch.Tensor],
                 direction: Callable[[torch.Tensor], torch.Tensor],
                 copies: Callable[[torch.Tensor], torch.Tensor] = zero) -> None:
        super().__init__()
        self.wrong, self.direction, self.copies = wrong, direction, copies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = x[:, :COPIES].mean(1) > 0.5  # the clean class
        canary = x[:, COPIES:]
        d = (canary - CLEAN).abs().amax(1)
        pred = side ^ self.wrong(d)
        value = 4 * nn.functional.one_hot(pred.long(), 2).float() - 2 + 0.01 * x[:, :1].detach()
        t = (canary * self.direction(canary.detach())).sum(1) + (x[:, :COPIES] * self.copies(x[:, :COPIES].detach())).sum(1)
        # +1 on the class that is not the clean one: the loss then grows along ``direction``
        away = torch.stack([torch.where(side, 1.0, -1.0), torch.where(side, -1.0, 1.0)], 1)
        return value + (t - t.detach())[:, None] * away


def canary_data(m: int = M) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(m) % 2
    side = np.where(y == 1, rng.uniform(0.8, 1.0, m), rng.uniform(0.0, 0.2, m))
    x = np.concatenate([np.repeat(side[:, None], COPIES, 1), np.tile(CLEAN.numpy(), (m, 1))], 1).astype(np.float32)
    return x, y.astype(np.int64)


def run(model: nn.Module, **cfg) -> tuple[dict, dict, object]:  # noqa: ANN003
    x, y = canary_data()
    adapter = TorchAdapter(model.eval(), input_kind="tabular", device=torch.device("cpu"), input_range=(0.0, 1.0))
    ds = AuditDataset(name="eval", inputs=x, target=y, class_names=None, sensitive_features=None, feature_names=None,
                      input_kind="tabular", path="mem", format="npz", sha256="0")
    cfg = {"tabular_units": "raw", "max_samples": M, "eps": [0.05, 0.2], "black_box_queries": 50, **cfg}
    out = AdversarialRobustness(AdversarialConfig(**cfg)).run(AuditContext(adapter, {"eval": ds}, seed=0, batch_size=64))
    rows = next(e for e in out.evidence if e.title == "Safeguards against false robustness").rows
    verdicts = {r[0]: r[1] for r in rows}
    head = {m.name: m.value for m in out.metrics if m.group is None}
    return verdicts, head, out


FALLS = ("FGSM linf: accuracy falls as ε grows", "PGD linf: accuracy falls as ε grows")
PGD_FGSM = "PGD at least as strong as FGSM (linf)"
UNBOUNDED = "ε spanning the input range (1) drives accuracy near zero"
BLACK_BOX = "black-box does not beat white-box"
MOVES = "FGSM linf: input gradients move the inputs"


def tripped(verdicts: dict) -> set[str]:
    return {k for k, v in verdicts.items() if v == "TRIPPED"}


def attacks_run(out) -> list[str]:  # noqa: ANN001
    return [r[0] for r in next(e for e in out.evidence if e.title == "Accuracy under attack").rows]


def test_canary_model_behaves_as_designed() -> None:
    """The construction itself: the clean prediction is right, the gradient points where it is told."""
    x, y = canary_data()
    model = Canary(lambda d: d > 0.03, const)
    xt = torch.from_numpy(x).requires_grad_(True)
    logits = model(xt)
    assert (logits.argmax(1).numpy() == y).all()
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(logits, torch.from_numpy(y), reduction="sum"), xt)
    assert (g[:, COPIES:] > 0).all() and (g[:, :COPIES] == 0).all()
    moved = x.copy()
    moved[:, COPIES] += 0.05
    assert (model(torch.from_numpy(moved)).argmax(1).numpy() != y).all()


def test_honest_canary_model_trips_nothing() -> None:
    """The control: wrong after any move of the canaries, with a truthful gradient — every safeguard passes."""
    verdicts, head, out = run(Canary(lambda d: d > 0.03, const), black_box="always")
    assert set(verdicts) == {*FALLS, PGD_FGSM, UNBOUNDED, BLACK_BOX, MOVES}
    assert tripped(verdicts) == set() and head["safeguards_tripped"] == 0 and out.status_floor == "pass"
    assert head["robust_accuracy"] == 0.0


def test_accuracy_rising_with_eps_trips_only_the_monotonicity_safeguard() -> None:
    """Wrong for small moves (0.03 < d < 0.1) and very large ones, right at d = 0.2: accuracy under FGSM and
    PGD rises from 0 at ε = 0.05 to 1 at ε = 0.2. The black-box attack runs because of it (and finds no more)."""
    verdicts, head, out = run(Canary(lambda d: ((d > 0.03) & (d < 0.1)) | (d > 0.5), const))
    assert tripped(verdicts) == set(FALLS)
    assert verdicts[PGD_FGSM] == verdicts[UNBOUNDED] == verdicts[BLACK_BOX] == "pass"
    assert head["safeguards_tripped"] == 2 and out.status_floor == "warn"
    assert "Gradient masking suspected" in out.limitations[0]
    assert "SQUARE" in attacks_run(out)  # the fallback ran because a safeguard tripped


def test_pgd_weaker_than_fgsm_trips_only_that_safeguard() -> None:
    """The gradient exists only at the clean point: FGSM uses it, PGD starts elsewhere and is blind. Wrong when
    d > 0.15: FGSM at ε = 0.2 always wins, PGD's random start only sometimes (about 1 - 0.75²)."""
    verdicts, head, out = run(Canary(lambda d: d > 0.15, at_clean_only), black_box="never")
    assert tripped(verdicts) == {PGD_FGSM} and verdicts[MOVES] == "pass"
    acc = {m.group: m.value for m in out.metrics if m.name == "accuracy_under_attack"}
    assert acc["fgsm/linf/0.2"] == 0.0 and acc["pgd/linf/0.2"] > 0.4
    assert head["safeguards_tripped"] == 1 and out.status_floor == "warn"
    assert head["robust_accuracy"] == 0.0 and "found by FGSM" in out.metrics[0].method


def test_accuracy_at_unbounded_eps_staying_high_trips_only_that_safeguard() -> None:
    """Wrong for 0.03 < d < 0.5 but right again far away: an attack free to go anywhere in the input range
    ends far away and fails, which a working attack never would."""
    verdicts, head, out = run(Canary(lambda d: (d > 0.03) & (d < 0.5), const))
    assert tripped(verdicts) == {UNBOUNDED}
    assert verdicts[BLACK_BOX] == "pass" and "SQUARE" in attacks_run(out)
    assert head["safeguards_tripped"] == 1 and out.status_floor == "warn"
    assert head["robust_accuracy"] == 0.0


def test_black_box_beating_white_box_trips_only_that_safeguard_and_its_number_is_used() -> None:
    """No gradient on the canaries (as behind a rounding or a quantiser), a useless one on the class copies: FGSM
    moves only the copies, PGD moves the canaries only by its random start; Square attack moves every feature by
    ±ε and wins. Robust accuracy is Square's."""
    model = Canary(lambda d: d > 0.15, zero, copies=outward)
    verdicts, head, out = run(model, black_box="always")
    assert tripped(verdicts) == {BLACK_BOX}
    acc = {m.group: m.value for m in out.metrics if m.name == "accuracy_under_attack"}
    assert acc["fgsm/linf/0.2"] == 1.0 and 0.4 < acc["pgd/linf/0.2"] < 0.8
    assert head["robust_accuracy"] == 0.0 and "found by Square" in out.metrics[0].method
    assert head["robust_accuracy"] < acc["pgd/linf/0.2"] and out.status_floor == "warn"


def test_zero_gradients_trip_the_unmoved_inputs_safeguard_and_the_black_box_attack_then_runs() -> None:
    """No input gradient anywhere: FGSM leaves every input where it was, so no white-box number moves —
    accuracy falls with ε (PGD's random start alone), PGD beats FGSM, the unbounded attack reaches zero.
    Only the unmoved-inputs safeguard sees it; the black-box attack it triggers finds the real robustness."""
    verdicts, head, out = run(Canary(lambda d: d > 0.15, zero))
    assert tripped(verdicts) == {MOVES, BLACK_BOX}
    assert next(r[2] for r in out.evidence[1].rows if r[0] == MOVES).startswith("100.0% of samples unmoved at ε=0.2")
    assert head["robust_accuracy"] == 0.0 and "found by Square" in out.metrics[0].method and out.status_floor == "warn"


def test_quantised_model_is_attacked_through_its_float_twin() -> None:
    """An int8 dynamically quantised linear model has no input gradients; PGD on its float twin transfers
    (the two agree up to quantisation error), so robust accuracy is the share of rows further than ε from
    the decision boundary x0 = 0.5."""
    from models.variants import make_variant, variant_adapter

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (200, 2)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    linear = nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[-4.0, 0.0], [4.0, 0.0]]))
        linear.bias.copy_(torch.tensor([2.0, -2.0]))
    base = TorchAdapter(linear.eval(), input_kind="tabular", device=torch.device("cpu"), input_range=(0.0, 1.0))
    variant = variant_adapter(make_variant(linear, "int8_eager_dynamic", example_inputs=torch.from_numpy(x[:4])), base)
    assert variant.differentiable is False and variant.float_twin is base
    ds = AuditDataset(name="eval", inputs=x, target=y, class_names=None, sensitive_features=None, feature_names=None,
                      input_kind="tabular", path="mem", format="npz", sha256="0")
    cfg = AdversarialConfig(tabular_units="raw", max_samples=200, eps=[0.1], black_box="never")
    out = AdversarialRobustness(cfg).run(AuditContext(variant, {"eval": ds}, seed=0, batch_size=64))
    head = next(m for m in out.metrics if m.name == "robust_accuracy")
    assert "transfer from float twin" in head.method
    assert any("float twin was evaluated" in n for n in out.limitations)
    assert head.value == pytest.approx(float(np.mean(np.abs(x[:, 0] - 0.5) > 0.1)), abs=0.02)


# ----------------------------------------------------------------- the safeguard functions on known numbers


def test_accuracy_falls_with_eps_on_known_curves() -> None:
    tol = 0.01
    curve = {("pgd", "linf"): [(0.1, 0.2), (0.03, 0.5), (0.01, 0.9)],  # unsorted on purpose
             ("fgsm", "linf"): [(0.01, 0.5), (0.03, 0.509), (0.1, 0.4)],  # a rise within tol
             ("fgsm", "l2"): [(0.5, 0.3), (1.0, 0.32)]}  # a rise beyond tol
    rows = masking.accuracy_falls_with_eps(curve, tol)
    assert rows == [["PGD linf: accuracy falls as ε grows", "pass", "0.01:0.900, 0.03:0.500, 0.1:0.200"],
                    ["FGSM linf: accuracy falls as ε grows", "pass", "0.01:0.500, 0.03:0.509, 0.1:0.400"],
                    ["FGSM l2: accuracy falls as ε grows", "TRIPPED", "0.5:0.300, 1:0.320"]]
    # exactly at the tolerance still passes; a rise at any step (not only the last) trips
    assert masking.accuracy_falls_with_eps({("pgd", "linf"): [(1, 0.5), (2, 0.5 + tol)]}, tol)[0][1] == "pass"
    assert masking.accuracy_falls_with_eps({("pgd", "linf"): [(1, 0.2), (2, 0.4), (3, 0.0)]}, tol)[0][1] == "TRIPPED"
    assert masking.accuracy_falls_with_eps({("pgd", "linf"): [(1, 0.2)]}, tol)[0][1] == "pass"


def test_pgd_at_least_fgsm_on_known_curves() -> None:
    tol = 0.01
    curve = {("fgsm", "linf"): [(0.1, 0.3), (0.3, 0.1)], ("pgd", "linf"): [(0.3, 0.2), (0.1, 0.31)],
             ("fgsm", "l2"): [(1.0, 0.4)], ("pgd", "l2"): [(1.0, 0.4), (2.0, 0.9)]}  # 2.0: no FGSM to compare
    assert masking.pgd_at_least_fgsm(curve, tol) == [
        ["PGD at least as strong as FGSM (l2)", "pass", "all ε"],
        ["PGD at least as strong as FGSM (linf)", "TRIPPED", "PGD weaker at ε=[0.3]"]]
    two = {("fgsm", "linf"): [(0.3, 0.0), (0.1, 0.0)], ("pgd", "linf"): [(0.3, 0.5), (0.1, 0.5)]}
    assert masking.pgd_at_least_fgsm(two, tol)[0][2] == "PGD weaker at ε=[0.1, 0.3]"
    assert masking.pgd_at_least_fgsm({("fgsm", "linf"): [(0.1, 0.3)], ("pgd", "linf"): [(0.1, 0.3 + tol)]}, tol)[0][1] == "pass"
    # one attack without the other (an attack list without FGSM): nothing to compare, nothing tripped
    for only in ("pgd", "fgsm"):
        assert masking.pgd_at_least_fgsm({(only, "l2"): [(1.0, 0.5)]}, tol) == [["PGD at least as strong as FGSM (l2)", "pass", "all ε"]]


def test_unmoved_inputs_safeguard_on_known_shares() -> None:
    rows = masking.gradients_move_inputs({"linf": (0.3, 0.1), "l2": (2.0, 0.5)})
    assert rows == [["FGSM l2: input gradients move the inputs", "TRIPPED", "50.0% of samples unmoved at ε=2 (must be ≤ 10%)"],
                    ["FGSM linf: input gradients move the inputs", "pass", "10.0% of samples unmoved at ε=0.3 (must be ≤ 10%)"]]
    assert masking.gradients_move_inputs({"linf": (0.3, 0.1001)})[0][1] == "TRIPPED"
    assert masking.gradients_move_inputs({"linf": (0.3, 0.3)}, bound=0.5)[0][1] == "pass"
    assert masking.gradients_move_inputs({}) == []


def test_unbounded_and_black_box_safeguards_on_known_numbers() -> None:
    assert masking.unbounded_reaches_zero(0.1, 1.0, 0.1) == [
        "ε spanning the input range (1) drives accuracy near zero", "pass", "accuracy 0.100 (must be ≤ 0.1)"]
    assert masking.unbounded_reaches_zero(0.1001, 255.0, 0.1)[1] == "TRIPPED"
    assert masking.black_box_not_stronger("Square", 0.25, 0.3, 0.05) == [
        "black-box does not beat white-box", "pass", "Square 0.250 vs PGD 0.300 (margin 0.05)"]
    assert masking.black_box_not_stronger("Square", 0.2499, 0.3, 0.05)[1] == "TRIPPED"
    assert masking.black_box_not_stronger("Square", 0.9, 0.3, 0.05)[1] == "pass"
    rows = [["a", "pass", ""], ["b", "TRIPPED", ""], ["c", "TRIPPED", "x"]]
    assert masking.tripped(rows) == rows[1:]
