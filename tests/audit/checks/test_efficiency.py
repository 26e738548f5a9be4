"""Efficiency: FLOPs against a hand count, sizes against known answers, energy labelled honestly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.checks.efficiency import Efficiency, EfficiencyConfig, count_flops
from audit.context import AuditContext
from audit.data import AuditDataset
from models.adapter import TorchAdapter


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def test_flops_match_hand_count() -> None:
    # Two matmuls: 2*4*8 + 2*8*2 = 96 FLOPs per sample (multiply-adds counted as 2).
    assert count_flops(mlp(), torch.zeros(1, 4)) == 96
    conv = torch.nn.Conv2d(1, 2, 3, bias=False)  # 2 out ch * 6*6 positions * 9 taps * 2 = 1296
    assert count_flops(conv, torch.zeros(1, 1, 8, 8)) == 1296


def ctx() -> AuditContext:
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    ds = AuditDataset(name="eval", inputs=x, target=np.zeros(32, np.int64), class_names=None, sensitive_features=None,
                      feature_names=None, input_kind="tabular", path="mem", format="npz", sha256="0")
    adapter = TorchAdapter(mlp(), input_kind="tabular", device=torch.device("cpu"))
    return AuditContext(adapter, {"eval": ds}, batch_size=16)


def test_metrics_and_projection() -> None:
    out = Efficiency(EfficiencyConfig(n_repeats=5, min_seconds=0.5, inferences_per_year=1e6, training_watts=300,
                                      training_hours=2)).run(ctx())
    m = {x.name: x for x in out.metrics}
    assert m["n_parameters"].value == 4 * 8 + 8 + 8 * 2 + 2
    assert 58 * 4 / 2**20 < m["model_size_mb"].value < (58 * 4 + 4096) / 2**20  # dense float32 + torch.save framing
    assert m["weight_sparsity"].value == pytest.approx(0.0)
    assert m["flops_per_sample"].value == 96 and m["flops_per_sample"].provenance == "estimated"
    assert 0 < m["latency_p50_ms"].value <= m["latency_p95_ms"].value
    assert m["training_energy_kwh"].value == pytest.approx(0.6)
    from codecarbon.input import DataSource

    usa = DataSource().get_global_energy_mix_data()["USA"]["carbon_intensity"]  # the context's default country
    assert m["training_co2_kg"].value == pytest.approx(0.6 * usa / 1000) and m["training_co2_kg"].provenance == "estimated"
    if "energy_per_1000_wh" in m:
        energy = m["energy_per_1000_wh"]
        # No RAPL/NVML on CI machines: the energy must then be labelled an estimate, with its source.
        assert energy.provenance in ("measured", "estimated") and "cpu:" in energy.method
        assert m["yearly_energy_kwh"].value == pytest.approx(energy.value / 1000 * 1e6 / 1000)
        assert m["yearly_energy_kwh"].provenance == "estimated"


def test_without_energy() -> None:
    out = Efficiency(EfficiencyConfig(n_repeats=3, min_seconds=0, measure_energy=False)).run(ctx())
    assert "energy_per_1000_wh" not in {x.name for x in out.metrics}
    assert out.metrics[0].n == 3  # exactly n_repeats batches when no minimum duration is asked


def test_size_is_on_disk_size_and_pruned_zeros_are_stated() -> None:
    """int8 weights are packed (about a quarter of float32 on disk); unstructured pruning saves nothing
    on disk and the check says so."""
    from models.variants import make_variant, state_dict_bytes, weight_sparsity

    torch.manual_seed(0)
    big = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    base = state_dict_bytes(big)
    assert base == pytest.approx((256 * 256 + 256 + 256 * 4 + 4) * 4, rel=0.02)
    int8 = make_variant(big, "int8_weight").module
    assert state_dict_bytes(int8) < 0.35 * base
    pruned = make_variant(big, "pruned:0.5").module
    assert weight_sparsity(pruned) == pytest.approx(0.5, abs=0.01)
    assert state_dict_bytes(pruned) >= base * 0.98


def test_an_energy_meter_that_fails_gives_null_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not measured is never zero: a CodeCarbon failure is said, and the energy metrics are null."""
    import audit.energy

    class Broken:
        def __init__(self, *_a: object) -> None:
            pass

        def __enter__(self) -> Broken:
            raise RuntimeError("no power readings on this host")

    monkeypatch.setattr(audit.energy, "EnergyMeter", Broken)
    out = Efficiency(EfficiencyConfig(n_repeats=3, min_seconds=0)).run(ctx())
    energy = {m.name: m for m in out.metrics if m.name in ("energy_per_1000_wh", "co2_per_1000_g")}
    assert set(energy) == {"energy_per_1000_wh", "co2_per_1000_g"}
    assert all(m.value is None and "no power readings on this host" in m.method for m in energy.values())
    assert any("Energy was not measured" in t and "no power readings" in t for t in out.limitations)
    assert "Wh per 1,000" not in out.summary


def test_timed_loop_stops_within_max_seconds_plus_one_batch() -> None:
    import time

    from audit.checks.efficiency import timed_batches

    start = time.perf_counter()
    times = timed_batches(lambda: time.sleep(0.05), n_repeats=100, min_seconds=0.0, max_seconds=0.3)
    wall = time.perf_counter() - start
    assert 1 <= len(times) < 100  # 100 batches would take 5 s
    assert wall <= 0.3 + times[-1] + 0.1, (wall, times)  # no batch started after the cap (0.1 s: loop overhead)
    # the floor still holds below the cap, and the first batch always runs
    assert len(timed_batches(lambda: None, n_repeats=7, min_seconds=0.0, max_seconds=5.0)) == 7
    assert len(timed_batches(lambda: time.sleep(0.02), n_repeats=3, min_seconds=0.0, max_seconds=1e-9)) == 1


class _Slow(torch.nn.Module):
    """A model that takes 50 ms per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(0.05)
        return self.inner(x)


def test_a_slow_model_is_timed_within_the_cap_and_the_runs_are_reported() -> None:
    c = ctx()
    c.adapter = TorchAdapter(_Slow(), input_kind="tabular", device=torch.device("cpu"))
    out = Efficiency(EfficiencyConfig(n_repeats=200, n_warmup=0, min_seconds=0.0, max_seconds=0.3,
                                      measure_energy=False)).run(c)
    m = {x.name: x for x in out.metrics}
    runs = m["latency_p50_ms"].n
    assert 1 <= runs <= 0.3 / 0.05 + 1  # at most the batches that fit in the cap, plus the one running at the cap
    assert f"after {runs} of n_repeats = 200 batches" in " ".join(out.limitations)
    assert f"{runs} timed batches" in out.summary
    assert ["timed batches", runs] in out.evidence[0].rows


def test_min_seconds_above_max_seconds_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="min_seconds .* is above max_seconds"):
        EfficiencyConfig(min_seconds=20, max_seconds=10)
