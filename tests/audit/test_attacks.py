"""The torch-native PGD's fused L∞ step against the step-project-clip it replaces, and its frozen parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audit.attacks import frozen_parameters, pgd, project


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
