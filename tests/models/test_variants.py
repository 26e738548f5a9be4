"""Compressed variants: each runs, stays close to its base, records what it did, and fails clearly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audit.attacks import pgd
from models.adapter import Normalize, TorchAdapter
from models.errors import ModelInputError
from models.variants import VARIANTS, list_variants, make_variant, parse_variant, variant_adapter
from models.zoo import create_model

CPU_VARIANTS = [n for n in list_variants() if "cpu" in VARIANTS[n].devices]
CUDA = torch.cuda.is_available()
#: quantised variants: argmax agreement with the base on random inputs, and max logit difference
QUANT_TOL = {"int8_weight": 0.05, "int8_dynamic": 0.1, "int8_eager_dynamic": 0.1, "bf16": 0.1, "fp16": 0.02}
META_KEYS = {"variant", "params", "method", "library", "library_version", "bit_width", "sparsity", "dtype",
             "stored_elements_before", "stored_elements_after", "size_bytes_before", "size_bytes",
             "differentiable", "float_twin", "devices", "device"}


class TinyLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 16, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(x)[0][:, -1])


class ConvOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3))


@pytest.fixture(scope="module")
def lenet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("lenet5", n_classes=3).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(128, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _finetune(images: torch.Tensor, lenet: nn.Module) -> dict:
    with torch.no_grad():
        y = lenet(images).argmax(1)
    return {"x": images.numpy(), "y": y.numpy(), "epochs": 1, "attack": pgd}


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.argmax(1) == b.argmax(1)).float().mean().item()


@pytest.mark.parametrize("name", CPU_VARIANTS)
def test_every_cpu_variant_runs_and_records_metadata(name, lenet, images):
    result = make_variant(lenet, name, example_inputs=images[:8], finetune=_finetune(images, lenet))
    with torch.no_grad():
        out = result.module(images)
    assert out.shape == (128, 3) and out.dtype == torch.float32
    assert META_KEYS <= set(result.metadata), META_KEYS - set(result.metadata)
    assert result.metadata["variant"] == name and result.metadata["size_bytes"] > 0
    # the base model is untouched
    assert all(type(p) is nn.Parameter and p.dtype == torch.float32 for p in lenet.parameters())


@pytest.mark.parametrize("name", [n for n in QUANT_TOL if n in CPU_VARIANTS])
def test_quantised_variants_stay_close_to_base(name, lenet, images):
    result = make_variant(lenet, name, example_inputs=images[:8])
    with torch.no_grad():
        base, out = lenet(images), result.module(images)
    assert _agreement(base, out) >= 0.9
    assert (base - out).abs().max().item() < QUANT_TOL[name]
    assert result.metadata["bit_width"] in (8, 16)


def test_eager_dynamic_int8_on_lstm():
    torch.manual_seed(0)
    model = TinyLSTM().eval()
    x = torch.randn(64, 5, 4, generator=torch.Generator().manual_seed(2))
    result = make_variant(model, "int8_eager_dynamic", example_inputs=x[:8])
    with torch.no_grad():
        assert _agreement(model(x), result.module(x)) >= 0.9
        assert (model(x) - result.module(x)).abs().max().item() < 0.1
    assert "LSTM" in result.metadata["quantised_layers"]
    assert result.metadata["size_bytes"] < result.metadata["size_bytes_before"]
    assert result.metadata["differentiable"] is False


@pytest.mark.parametrize(("name", "expected"), [("int8_weight", True), ("int8_dynamic", False),
                                                ("int8_eager_dynamic", False), ("bf16", True), ("pruned", True)])
def test_differentiable_flag_is_measured(name, expected, lenet, images):
    result = make_variant(lenet, name, example_inputs=images[:8])
    assert result.metadata["differentiable"] is expected
    assert result.metadata["differentiable_source"].startswith("measured")
    if expected:
        assert result.float_twin is None and result.metadata["float_twin"] is None
    else:
        assert result.float_twin is lenet and "float twin" in result.metadata["float_twin"]
    x = images[:4].clone().requires_grad_(True)
    try:
        result.module(x).sum().backward()
        grad_ok = x.grad is not None and x.grad.abs().sum().item() > 0
    except RuntimeError:
        grad_ok = False
    assert grad_ok is expected


def test_without_example_inputs_differentiable_is_the_documented_default(lenet):
    assert make_variant(lenet, "int8_dynamic").metadata["differentiable"] is False
    assert make_variant(lenet, "int8_weight").metadata["differentiable"] is True


@pytest.mark.parametrize("sparsity", [0.3, 0.7])
def test_pruned_sparsity_is_measured(sparsity, lenet, images):
    result = make_variant(lenet, f"pruned:{sparsity}", example_inputs=images[:8])
    assert result.metadata["sparsity"] == pytest.approx(sparsity, abs=0.01)
    assert not any(n.endswith("_orig") for n, _ in result.module.named_parameters())  # pruning made permanent


def test_pruned_finetune_keeps_zeros(lenet, images):
    result = make_variant(lenet, "pruned50", finetune=_finetune(images, lenet))
    assert result.metadata["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert result.metadata["finetune"]["epochs"] == 1


def test_structured_pruning_shrinks_and_runs(lenet, images):
    result = make_variant(lenet, "pruned_structured:0.5", example_inputs=images[:8])
    before = sum(p.numel() for p in lenet.parameters())
    after = sum(p.numel() for p in result.module.parameters())
    assert after < 0.5 * before
    assert result.metadata["stored_elements_after"] == after
    assert result.metadata["size_bytes"] < result.metadata["size_bytes_before"]
    assert result.module.features[0].out_channels == 8
    assert result.module(images).shape == (128, 3)


def test_distilled_student_agrees_with_teacher(lenet, images):
    result = make_variant(lenet, "distilled", finetune={"x": images.numpy(), "epochs": 30})
    with torch.no_grad():
        agree = _agreement(lenet(images), result.module(images))
    # better than chance (1/3) and better than an untrained student of the same shape
    assert agree > 0.6, agree
    assert result.metadata["stored_elements_after"] < result.metadata["stored_elements_before"]
    assert result.module.features[0].out_channels == 8


def test_variant_adapter_keeps_preprocessing_and_points_at_float_twin(lenet, images):
    base = TorchAdapter(lenet, input_kind="image", device=torch.device("cpu"), class_names=["a", "b", "c"],
                        preprocess=Normalize([0.5], [0.25]), input_range=(0.0, 1.0))
    result = make_variant(lenet, "int8_dynamic", example_inputs=images[:8])
    adapter = variant_adapter(result, base)
    assert adapter.float_twin is base and adapter.differentiable is False
    assert adapter.class_names == ["a", "b", "c"] and adapter.input_kind == "image"
    assert adapter.input_range == (0.0, 1.0) and adapter.preprocess is base.preprocess
    assert _agreement(base.predict_logits(images.numpy()), adapter.predict_logits(images.numpy())) >= 0.9


@pytest.mark.parametrize(("spec", "expected"), [
    ("pruned50", ("pruned", {"sparsity": 0.5})),
    ("pruned:0.3", ("pruned", {"sparsity": 0.3})),
    ("pruned_structured:sparsity=0.25", ("pruned_structured", {"sparsity": 0.25})),
    ("int8_dynamic", ("int8_dynamic", {})),
    ("distilled:temperature=2", ("distilled", {"width_ratio": 0.5, "temperature": 2.0})),
])
def test_parse_variant(spec, expected):
    assert parse_variant(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("pruned:1.5", "The 'sparsity' parameter of variant 'pruned' must be a float in (0, 1). Got 1.5 instead."),
    ("pruned:0", "The 'sparsity' parameter of variant 'pruned' must be a float in (0, 1). Got 0.0 instead."),
    ("pruned:-0.2", "must be a float in (0, 1)"),
    ("pruned:abc", "The 'sparsity' parameter of variant 'pruned' must be a number. Got 'abc' instead."),
    ("prunned", "unknown variant 'prunned'. Did you mean 'pruned'?"),
    ("int8_dynamic:0.5", "variant 'int8_dynamic' takes no parameters"),
    ("pruned:depth=2", "variant 'pruned' has no parameter 'depth'"),
    ("pgd_at:steps=1.5", "The 'steps' parameter of variant 'pgd_at' must be a positive integer. Got 1.5 instead."),
    ("pgd_at:epochs=0", "The 'epochs' parameter of variant 'pgd_at' must be a positive integer. Got 0.0 instead."),
    ("pgd_at:eps=0", "The 'eps' parameter of variant 'pgd_at' must be > 0. Got 0.0 instead."),
    ("pgd_at:lr=-1", "The 'lr' parameter of variant 'pgd_at' must be > 0. Got -1.0 instead."),
    ("pgd_at:alpha=2", "variant 'pgd_at' has no parameter 'alpha'; it takes: eps, steps, epochs, lr"),
])
def test_bad_specs_raise(spec, message):
    with pytest.raises(ModelInputError) as info:
        parse_variant(spec)
    assert message in str(info.value)


def test_variants_that_do_not_apply_raise(images):
    conv = ConvOnly().eval()
    with pytest.raises(ModelInputError, match=r"^variant int8_eager_dynamic does not apply: the model has no nn.Linear"):
        make_variant(conv, "int8_eager_dynamic")
    with pytest.raises(ModelInputError, match=r"^variant int8_weight: the model has no nn.Linear"):
        make_variant(conv, "int8_weight")
    # the only Linear is the classifier: nothing to shrink
    with pytest.raises(ModelInputError, match=r"^variant pruned_structured cannot shrink Linear"):
        make_variant(nn.Linear(4, 3), "pruned_structured", example_inputs=torch.rand(2, 4))
    with pytest.raises(ModelInputError, match="needs example_inputs"):
        make_variant(create_model("lenet5", n_classes=3), "pruned_structured")
    with pytest.raises(ModelInputError, match=r"^variant distilled has no default student for TinyLSTM"):
        make_variant(TinyLSTM(), "distilled", finetune={"x": torch.randn(4, 5, 4).numpy()})
    with pytest.raises(ModelInputError, match="needs training inputs"):
        make_variant(create_model("lenet5", n_classes=3), "distilled")


@pytest.mark.skipif(CUDA, reason="checks the error raised where CUDA is absent")
def test_gpu_only_variant_on_cpu_says_so(lenet):
    with pytest.raises(ModelInputError, match=r"^variant 'fp16' cannot run on cpu: it runs on cuda only\."):
        make_variant(lenet, "fp16")


def test_cpu_only_variant_on_cuda_says_so(lenet):
    if not CUDA:
        with pytest.raises(ModelInputError, match="CUDA is not available"):
            make_variant(lenet, "int8_eager_dynamic", device="cuda")
    else:
        with pytest.raises(ModelInputError, match=r"^variant 'int8_eager_dynamic' cannot run on cuda: it runs on cpu only\."):
            make_variant(lenet, "int8_eager_dynamic", device="cuda")


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", [n for n in list_variants() if "cuda" in VARIANTS[n].devices])
def test_cuda_variants(name, lenet, images):
    x = images.cuda()
    ft = {**_finetune(images, lenet)}
    result = make_variant(lenet, name, example_inputs=x[:8], device="cuda", finetune=ft)
    with torch.no_grad():
        out = result.module(x)
        base = lenet.cuda()(x)
        lenet.cpu()
    assert out.is_cuda and out.dtype == torch.float32
    assert result.metadata["device"].startswith("cuda")
    if name in QUANT_TOL:
        assert _agreement(base, out) >= 0.9
        assert (base - out).abs().max().item() < QUANT_TOL[name]


# ------------------------------------------------------------------------------ pgd_at: a defence as a variant
@pytest.fixture(scope="module")
def digits_mlp_split():
    """A standard-trained MLP on scikit-learn's digits (pixels in [0, 1]): accurate, not robust."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x[:1200]), torch.from_numpy(y[:1200])
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval(), x[:1200], y[:1200], torch.from_numpy(x[1200:1500]), torch.from_numpy(y[1200:1500])


def _robust_and_clean(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> tuple[float, float]:

    adv = pgd(model, x, y, eps=eps, steps=10, clip=(0.0, 1.0), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return float((model(adv).argmax(1) == y).float().mean()), float((model(x).argmax(1) == y).float().mean())


def test_pgd_at_raises_pgd_robust_accuracy_on_held_out_data(digits_mlp_split):
    model, x_tr, y_tr, x_te, y_te = digits_mlp_split
    before_robust, before_clean = _robust_and_clean(model, x_te, y_te, 0.1)
    result = make_variant(model, "pgd_at:eps=0.1,steps=3,epochs=2,lr=0.003", example_inputs=x_te[:8],
                          finetune={"x": x_tr, "y": y_tr, "clip": (0.0, 1.0), "attack": pgd})
    after_robust, after_clean = _robust_and_clean(result.module, x_te, y_te, 0.1)
    assert after_robust >= before_robust + 0.08, (before_robust, after_robust)
    assert after_clean >= before_clean - 0.05, (before_clean, after_clean)
    at = result.metadata["adversarial_training"]
    assert (at["eps"], at["steps"], at["epochs"], at["lr"], at["n_samples"]) == (0.1, 3, 2, 0.003, 1200)
    assert at["clip"] == [0.0, 1.0] and at["step_size"] == pytest.approx(2.5 * 0.1 / 3)
    assert result.metadata["differentiable"] is True and result.metadata["attack"] == "audit.attacks.pgd"
    # the base model is untouched and its parameters still train
    assert _robust_and_clean(model, x_te, y_te, 0.1) == (before_robust, before_clean)
    assert all(p.requires_grad for p in model.parameters()) and all(p.requires_grad for p in result.module.parameters())


def test_pgd_at_respects_preprocessing_and_input_range(lenet, images):
    """ε is in raw input units: with preprocessing inside, adversarial inputs stay in the ε-ball and the range."""

    seen: list[torch.Tensor] = []
    original = pgd

    def spy(logits_fn, x, y, **kw):
        adv = original(logits_fn, x, y, **kw)
        seen.append((adv - x).abs().max().detach())
        seen.append(adv.min().detach())
        seen.append(adv.max().detach())
        return adv

    with torch.no_grad():
        y = lenet(images).argmax(1)
    make_variant(lenet, "pgd_at:eps=0.05,steps=2,epochs=1",
                 finetune={"x": images.numpy(), "y": y.numpy(), "clip": (0.0, 1.0), "attack": spy,
                           "preprocess": Normalize([0.5], [0.25])})
    assert seen and max(seen[0::3]) <= 0.05 + 1e-6
    assert min(seen[1::3]) >= 0.0 and max(seen[2::3]) <= 1.0


def test_pgd_at_needs_labelled_continuous_training_data(lenet):
    with pytest.raises(ModelInputError, match=r"^variant pgd_at needs labelled training data"):
        make_variant(lenet, "pgd_at")
    with pytest.raises(ModelInputError, match="needs continuous inputs"):
        make_variant(nn.Linear(4, 2), "pgd_at", finetune={"x": torch.ones(4, 4, dtype=torch.long), "y": [0, 1, 0, 1],
                                                          "attack": pgd})


@pytest.mark.parametrize(("spec", "expected"), [
    ("pgd_at", {"eps": 0.1, "steps": 7, "epochs": 5, "lr": 1e-3}),
    ("pgd_at:0.03", {"eps": 0.03, "steps": 7, "epochs": 5, "lr": 1e-3}),
    ("pgd_at:eps=0.05,steps=3,epochs=2", {"eps": 0.05, "steps": 3, "epochs": 2, "lr": 1e-3}),
])
def test_parse_pgd_at(spec, expected):
    assert parse_variant(spec) == ("pgd_at", expected)


