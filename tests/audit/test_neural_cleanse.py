"""Neural Cleanse (audit.poisoning.reverse_engineer_triggers): the batched, chunked optimisation equals an
independent per-class loop, the model's weights stay frozen, the batch bound holds and early stopping fires
on a converged trigger."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audit.poisoning import reverse_engineer_triggers

pytestmark = pytest.mark.usefixtures("one_thread")

K, B, SEED = 6, 8, 3
KW = {"low": 0.0, "high": 1.0, "channel_axis": True, "batch_size": B, "seed": SEED}


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, K)).eval()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)


def per_class_loop(net: nn.Module, x: np.ndarray, steps: int, lr: float = 0.1, init_cost: float = 1e-3,
                   threshold: float = 0.99, patience: int = 5, mult: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Wang et al.'s loop, one class at a time (its own Adam and cost schedule), no early stopping; the same
    random draws as the batched version (the initial patterns, then one batch of rows per step)."""
    xt = torch.from_numpy(x)
    l1s, masks = [], []
    for c in range(K):
        gen = torch.Generator().manual_seed(SEED)
        pattern_raw = (torch.rand((K, *x.shape[1:]), generator=gen) * 2 - 1)[c].clone().requires_grad_(True)
        mask_raw = torch.zeros((1, *x.shape[2:]), requires_grad=True)
        opt = torch.optim.Adam([mask_raw, pattern_raw], lr=lr, betas=(0.5, 0.9))
        cost, up, down, best, best_mask = init_cost, 0, 0, float("inf"), None
        for _ in range(steps):
            xb = xt[torch.randint(0, len(xt), (B,), generator=gen)]
            mask = torch.tanh(mask_raw) / 2 + 0.5
            adv = (1 - mask) * xb + mask * (torch.tanh(pattern_raw) / 2 + 0.5)
            logits = net(adv)
            target = torch.full((B,), c)
            loss = nn.functional.cross_entropy(logits, target) + cost * mask.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            success = (logits.argmax(1) == target).float().mean().item()
            if success >= threshold and mask.sum().item() < best:
                best, best_mask = mask.sum().item(), mask.detach().numpy()
            up, down = (up + 1, 0) if success >= threshold else (0, down + 1)
            if up >= patience:
                cost, up = cost * mult, 0
            if down >= patience:
                cost, down = cost / mult**1.5, 0
        assert best_mask is not None, f"class {c} never reached the threshold: pick another seed for this test"
        l1s.append(best)
        masks.append(best_mask)
    return np.array(l1s), np.stack(masks)


STEPS = 60


@pytest.fixture(scope="module")
def reference(net, x) -> tuple[np.ndarray, np.ndarray]:
    return per_class_loop(net, x, STEPS)


@pytest.mark.parametrize("max_batch", [None, B, 2 * B + 3, 5])
def test_batched_triggers_equal_the_per_class_loop(net, x, reference, max_batch) -> None:
    """All classes in one pass, one class a pass, and chunks that split a class's samples across passes
    (gradients accumulated) all give the masks of the independent per-class loop."""
    ref_l1, ref_masks = reference
    found = reverse_engineer_triggers(net, x, K, steps=STEPS, max_batch=max_batch, early_stop_patience=0, **KW)
    assert found.reached.all() and (found.steps_used == STEPS).all()
    np.testing.assert_allclose(found.mask_l1, ref_l1, rtol=1e-4)
    np.testing.assert_allclose(found.masks, ref_masks, atol=1e-4)
    assert len(np.unique(np.round(ref_l1, 3))) == K  # distinct classes: a mix-up between them would show


def test_batches_stay_under_max_batch_and_the_weights_frozen(net, x) -> None:
    sizes: list[int] = []
    for p in net.parameters():
        p.grad = None  # the per-class reference loop above trains nothing but leaves gradients

    class Recording(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            sizes.append(len(inputs))
            assert not any(p.requires_grad for p in self.parameters()), "weights not frozen during the optimisation"
            return self.net(inputs)

    model = Recording()
    reverse_engineer_triggers(model, x, K, steps=3, max_batch=20, early_stop_patience=0, **KW)
    assert max(sizes) <= 20 and sum(sizes) == 3 * K * B
    assert all(p.requires_grad and p.grad is None for p in net.parameters())  # restored, never given a gradient


class OnePixel(nn.Module):
    """Class c's logit is 20 × pixel 10·c, on inputs in [0, 0.5]: a one-pixel trigger is the smallest there is."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, K, bias=False)
        weight = torch.zeros(K, 64)
        weight[torch.arange(K), torch.arange(K) * 10] = 20.0
        self.linear.weight.data = weight

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(inputs.flatten(1))


def test_early_stopping_fires_once_a_trigger_has_converged(x) -> None:
    """Each class stops once it has been at the trade-off (cost raised until the trigger failed, then lowered)
    and its smallest working mask has not shrunk by 1% for the patience; running on to the step limit finds
    masks hardly smaller. Until it stops, a class follows the same path as without early stopping."""
    model, half = OnePixel(), x / 2
    steps, patience = 400, 50
    full = reverse_engineer_triggers(model, half, K, steps=steps, early_stop_patience=0, **KW)
    early = reverse_engineer_triggers(model, half, K, steps=steps, early_stop_patience=patience, **KW)
    assert early.reached.all() and (early.steps_used < steps).all() and (early.steps_used > patience).all()
    assert early.steps_used.sum() < 0.7 * full.steps_used.sum()
    assert (early.mask_l1 >= full.mask_l1 - 1e-6).all() and (early.mask_l1 <= 1.15 * full.mask_l1).all()
    assert (full.mask_l1 < 0.5).all()  # one pixel, partly masked: the trigger the model leaves no smaller choice than
    for c in (int(np.argmin(early.steps_used)), int(np.argmax(early.steps_used))):
        rerun = reverse_engineer_triggers(model, half, K, steps=int(early.steps_used[c]), early_stop_patience=0, **KW)
        np.testing.assert_allclose(early.mask_l1[c], rerun.mask_l1[c], rtol=1e-5)


def test_early_stopping_waits_for_the_cost_to_reach_the_trade_off(net, x) -> None:
    """While the mask's cost is still rising from init_cost (×1.5 every 5 successful steps) the first working
    mask — about half of every pixel — does not shrink for tens of steps; that plateau is not convergence.
    Stopping on it (ART's rule without its cost flags) kept masks of L1 ≈ 30 of 64 here."""
    found = reverse_engineer_triggers(net, x, K, steps=300, early_stop_patience=30, **KW)
    assert found.reached.all() and (found.mask_l1 < 16).all(), found.mask_l1
