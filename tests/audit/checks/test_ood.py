"""OOD scores and metrics against scikit-learn and constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from tiny_models import TINY_CNN_CLASS

from audit.checks.ood import OODConfig, OODDetection
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.ood_scores import (
    Mahalanobis,
    bootstrap_auroc,
    detection_metrics,
    energy_score,
    fpr_at_tpr,
    knn_score,
    max_logit_score,
    msp_score,
    natural_patches,
    synthetic_sets,
)
from models.loaders import load_model


def test_logit_scores_known_answers() -> None:
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(msp_score(logits), [0.5, np.exp(2) / (np.exp(2) + 1)])
    np.testing.assert_allclose(max_logit_score(logits), [0.0, 2.0])
    np.testing.assert_allclose(energy_score(logits), [np.log(2), np.log(np.exp(2) + 1)])
    np.testing.assert_allclose(energy_score(logits, temperature=2.0), [2 * np.log(2), 2 * np.log(np.exp(1) + 1)])


def test_mahalanobis_equals_direct_computation() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 50)
    feats = rng.normal(size=(150, 3)) @ np.array([[2, 0, 0], [0.5, 1, 0], [0, 0, 0.3]]) + labels[:, None] * 3.0
    maha = Mahalanobis(torch.tensor(feats), labels, ridge=0.0)
    means = np.stack([feats[labels == c].mean(0) for c in range(3)])
    centred = feats - means[labels]
    prec = np.linalg.inv(centred.T @ centred / len(feats))
    query = rng.normal(size=(7, 3)) * 4
    expected = -np.min([np.einsum("nd,de,ne->n", query - m, prec, query - m) for m in means], axis=0)
    np.testing.assert_allclose(maha.score(torch.tensor(query)), expected, rtol=1e-8)


def test_knn_known_answer() -> None:
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    query = torch.tensor([[2.0, 0.0]])  # normalised to (1, 0): distances 0, sqrt(2), 2
    np.testing.assert_allclose(knn_score(ref, query, k=1), [0.0], atol=1e-6)
    np.testing.assert_allclose(knn_score(ref, query, k=2), [-np.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(knn_score(ref, query, k=3), [-2.0], rtol=1e-6)


def test_detection_metrics_known_answers() -> None:
    ident = np.arange(100, 200, dtype=float)
    m = detection_metrics(ident, np.arange(0, 100, dtype=float))
    assert m["auroc"] == 1.0 and m["aupr"] == 1.0 and m["fpr95"] == 0.0
    m = detection_metrics(ident, ident.copy())  # indistinguishable: chance
    assert m["auroc"] == pytest.approx(0.5) and m["fpr95"] == pytest.approx(1.0)
    # Keeping 95 of the 100 ID scores puts the threshold at 105; two of the four OOD scores are >= 105.
    ood = np.array([104.5, 150.5, 199.5, 10.0])
    assert fpr_at_tpr(ident, ood) == pytest.approx(0.5)


def test_bootstrap_auroc_equals_sklearn_on_each_resample() -> None:
    rng = np.random.default_rng(1)
    ident = np.round(rng.normal(1, 1, 60), 1)  # rounded: ties count one half
    ood = np.round(rng.normal(0, 1, 40), 1)
    reps = bootstrap_auroc(ident, ood, 20, np.random.default_rng(5))
    draw = np.random.default_rng(5)
    pos = draw.integers(0, 60, (20, 60))
    neg = draw.integers(0, 40, (20, 40))
    for b in range(20):
        labels = np.r_[np.ones(60), np.zeros(40)]
        assert reps[b] == pytest.approx(roc_auc_score(labels, np.r_[ident[pos[b]], ood[neg[b]]]))


def test_synthetic_sets_have_input_shape() -> None:
    rng = np.random.default_rng(0)
    images = rng.random((20, 3, 16, 16), dtype=np.float32)
    sets = synthetic_sets(images, "image", 8, rng, (0.0, 1.0))
    assert set(sets) == {"uniform_noise", "gaussian_noise", "pixel_shuffled", "natural_patches"}
    for rows in sets.values():
        arr = rows.materialize()
        assert arr.shape == (8, 3, 16, 16) and arr.dtype == np.float32 and arr.min() >= 0 and arr.max() <= 1
        # made a batch at a time: any row is the same image whichever batch (or order) takes it
        np.testing.assert_array_equal(rows[np.array([5, 2])], arr[[5, 2]])
        np.testing.assert_array_equal(np.concatenate([rows[:3], rows[3:]]), arr)
        assert arr.std() > 0 and not np.array_equal(arr[0], arr[1])
    shuffled = sets["pixel_shuffled"].materialize()
    sorted_images = [np.sort(im.ravel()) for im in images]
    for row in shuffled:  # each a permutation of the pixels of one evaluation image
        assert any(np.array_equal(np.sort(row.ravel()), im) for im in sorted_images)
    table = rng.normal(size=(30, 4)).astype(np.float32)
    perm = synthetic_sets(table, "tabular", 10, rng, None)["permuted_features"]
    assert perm.shape == (10, 4) and all(np.isin(perm[:, j], table[:, j]).all() for j in range(4))
    text = synthetic_sets(["a b c", "d e"], "text", 3, rng, None)
    assert len(text["shuffled_tokens"]) == 3 and len(text["oov_strings"]) == 3


@pytest.mark.parametrize("side", [213, 224, 500])
def test_natural_patches_at_imagenet_size_and_beyond(side: int) -> None:
    """The bundled photographs are 427 px high: outputs over half of that (ImageNet's 224) are crops at their own
    size (or the photograph's, upscaled), not a crash."""
    rng = np.random.default_rng(0)
    patches = natural_patches((3, side, side), 3, rng, 0.0, 255.0)
    assert patches.shape == (3, 3, side, side) and 0 <= patches.min() and patches.max() <= 255 and patches.std() > 0


def _ctx(tmp_path, adapter, n: int = 40) -> AuditContext:
    rng = np.random.default_rng(0)
    ds = AuditDataset(name="eval", inputs=rng.random((n, 1, 8, 8), dtype=np.float32), target=rng.integers(0, 3, n),
                      class_names=None, sensitive_features=None, feature_names=None, input_kind="image",
                      path="mem", format="npz", sha256="0")
    return AuditContext(adapter, {"eval": ds}, seed=0, batch_size=16)


def test_check_on_tiny_cnn(tmp_path, safetensors_file) -> None:
    adapter = load_model(safetensors_file, model_class=TINY_CNN_CLASS, device="cpu", input_kind="image",
                         input_range=(0.0, 1.0))
    out = OODDetection(OODConfig(n_synthetic=20, n_resamples=20)).run(_ctx(tmp_path, adapter))
    per = [m for m in out.metrics if m.name == "auroc"]
    assert len(per) == 4 * 5  # four synthetic sets, five scores
    best = {}
    for m in per:
        set_name = m.group.split(" / ")[0]
        best[set_name] = max(best.get(set_name, 0.0), m.value)
        assert m.n == 20 + 20  # half the eval set (no reference) + 20 OOD samples
    assert out.metrics[0].name == "worst_auroc" and out.metrics[0].value == pytest.approx(min(best.values()))
    assert any("half of the evaluation set" in lim for lim in out.limitations)


class _Tempered(torch.nn.Module):
    """Logits divided by a temperature after the last Linear: no layer's input gives the features."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) / 1.5


def test_check_without_features_uses_logit_scores(tmp_path, torchscript_file) -> None:
    path = tmp_path / "tempered.pt"
    torch.jit.save(torch.jit.script(_Tempered(torch.jit.load(str(torchscript_file)))), str(path))
    adapter = load_model(path, device="cpu", input_kind="image")
    out = OODDetection(OODConfig(n_synthetic=20, n_resamples=0)).run(_ctx(tmp_path, adapter))
    groups = {m.group.split(" / ")[1] for m in out.metrics if m.name == "auroc"}
    assert groups == {"msp", "max_logit", "energy"}
    assert any("no penultimate features" in lim for lim in out.limitations)


def test_max_samples_caps_the_in_distribution_rows(tmp_path, safetensors_file) -> None:
    adapter = load_model(safetensors_file, model_class=TINY_CNN_CLASS, device="cpu", input_kind="image",
                         input_range=(0.0, 1.0))
    out = OODDetection(OODConfig(n_synthetic=20, n_resamples=0, max_samples=12)).run(_ctx(tmp_path, adapter))
    assert out.n_samples == 12 and all(m.n == 12 + 20 for m in out.metrics if m.name == "auroc")
    assert any("seeded subset of 12 of the" in lim for lim in out.limitations)


def test_synthetic_images_are_made_a_batch_at_a_time() -> None:
    """At 3×224×224 the four synthetic sets of n images were 4 × n × 602 KB of float32, made whole (1.2 GB at the
    standard n_synthetic of 500, plus float64 temporaries); now making them allocates nothing of that size and
    taking a batch allocates that batch."""
    import tracemalloc

    from audit.rows import ArrayRows

    rng = np.random.default_rng(0)
    images = ArrayRows(rng.integers(0, 256, (4, 3, 224, 224), dtype=np.uint8), np.float32)
    row_mb = 3 * 224 * 224 * 4 / 2**20
    tracemalloc.start()
    try:
        sets = synthetic_sets(images, "image", 100, rng, (0.0, 255.0))
        made = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.reset_peak()
        batch = sets["gaussian_noise"][np.arange(16)]
        taken = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert batch.shape == (16, 3, 224, 224) and len(sets) == 4 and all(len(s) == 100 for s in sets.values())
    assert made < 2 * row_mb, made  # whole sets: 4 × 100 rows = 230 MiB
    assert taken < 16 * row_mb * 3, taken  # one batch (float64 draws of a row at a time, then float32)
