"""Corruptions keep shape and range and grow with severity; the check's numbers add up."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import TINY_CNN_CLASS

from audit import corruptions as C
from audit.checks.corruption import CorruptionConfig, CorruptionRobustness
from audit.stats import wilson_interval
from audit.context import AuditContext
from audit.data import AuditDataset
from models.loaders import load_model

RNG = np.random.default_rng(0)
IMAGES = RNG.random((6, 3, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(C.IMAGE_CORRUPTIONS))
def test_image_corruptions_keep_shape_range_and_grow_with_severity(name: str) -> None:
    dist = []
    for s in C.SEVERITIES:
        out = C.corrupt_images(IMAGES, name, s, np.random.default_rng(1), (0.0, 1.0))
        assert out.shape == IMAGES.shape and out.dtype == np.float32
        assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
        dist.append(np.abs(out - IMAGES).mean())
    assert dist[-1] > dist[0] > 0  # severity 5 changes more than severity 1, and 1 changes something


def test_known_answers() -> None:
    flat = np.full((2, 1, 8, 8), 0.3)
    np.testing.assert_allclose(C.gaussian_blur(flat, 3, RNG), flat, atol=1e-6)  # blur keeps a constant image
    np.testing.assert_allclose(C.contrast(IMAGES, 5, RNG).mean(axis=(1, 2, 3)), IMAGES.mean(axis=(1, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(C.brightness(np.zeros((1, 1, 2, 2)), 5, RNG), 0.3)
    # Inputs in [-1, 1] are mapped to [0, 1] and back.
    out = C.corrupt_images(np.zeros((1, 1, 4, 4), np.float32), "brightness", 1, RNG, (-1.0, 1.0))
    np.testing.assert_allclose(out, -1 + 2 * 0.55, atol=1e-6)
    x = RNG.normal(size=(2000, 3))
    missing = C.tabular_missing(x, 5, np.random.default_rng(0))
    assert np.mean(missing != x) == pytest.approx(0.5, abs=0.03)
    assert C.text_case(["a b c"], 5, RNG) == ["A B C"]
    assert C.text_typos(["word " * 50], 5, np.random.default_rng(0))[0] != "word " * 50


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_check_on_tiny_cnn(safetensors_file) -> None:
    adapter = load_model(safetensors_file, model_class=TINY_CNN_CLASS, device="cpu", input_kind="image",
                         input_range=(0.0, 1.0))
    rng = np.random.default_rng(0)
    ds = AuditDataset(name="eval", inputs=rng.random((30, 1, 8, 8), dtype=np.float32), target=rng.integers(0, 3, 30),
                      class_names=None, sensitive_features=None, feature_names=None, input_kind="image",
                      path="mem", format="npz", sha256="0")
    ctx = AuditContext(adapter, {"eval": ds}, batch_size=16)
    out = CorruptionRobustness(CorruptionConfig(max_samples=20, n_resamples=50, severities=[1, 5])).run(ctx)
    accs = [m for m in out.metrics if m.name == "accuracy"]
    assert len(accs) == 7 * 2 and all(m.n == 20 for m in accs)
    head = {m.name: m for m in out.metrics if m.group is None}
    assert head["mce"].value == pytest.approx(np.mean([1 - m.value for m in accs]))
    assert head["relative_mce"].value == pytest.approx(head["mce"].value - (1 - head["clean_accuracy"].value))
    assert head["worst_accuracy"].value == pytest.approx(min(m.value for m in accs))
    assert head["mce"].ci_low <= head["mce"].value <= head["mce"].ci_high


def test_gaussian_blur_blurs_small_images() -> None:
    """Issue 15: σ scaled to an 8×8 image (0.1–0.25 px) changed nothing; σ stays in pixels below 32 px."""
    digits = np.random.default_rng(4).random((5, 1, 8, 8))
    changes = [float(np.abs(C.gaussian_blur(digits, s, RNG) - digits).mean()) for s in C.SEVERITIES]
    assert changes[0] > 0.02 and changes == sorted(changes)  # every severity moves pixels, more as it grows
    assert [C.blur_sigma(s, 8) for s in (1, 5)] == [C.blur_sigma(s, 32) for s in (1, 5)] == [0.4, 1.0]
    assert C.blur_sigma(5, 64) == 2.0  # larger images: scaled as before
    # A 1-D check of the kernel: one bright pixel spreads to its neighbours in proportion exp(-1 / (2 σ²)).
    spike = np.zeros((1, 1, 9, 9))
    spike[0, 0, 4, 4] = 1.0
    out = C.gaussian_blur(spike, 1, RNG)[0, 0]
    assert out[4, 3] / out[4, 4] == pytest.approx(np.exp(-1 / (2 * 0.4**2)), rel=1e-5)
