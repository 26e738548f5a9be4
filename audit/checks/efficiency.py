"""Efficiency: latency, throughput, size, FLOPs, and energy and carbon per 1,000 inferences.

Latency is timed over repeated batches after warm-up (with device synchronisation on GPUs);
energy comes from CodeCarbon's offline tracker around the same timed loop (``audit.energy``),
labelled measured or estimated by its source. Yearly projections from a configured inference
volume are always estimates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator

from audit.config import CheckConfig
from audit.context import AuditContext
from audit.registry import Check, CheckOutput, register_check
from audit.results import Metric, Table
from models.variants import state_dict_bytes, weight_sparsity


class EfficiencyConfig(CheckConfig):
    """Settings of the ``efficiency`` check."""

    n_repeats: int = Field(default=20, ge=3, description="Timed batches (after warm-up) for latency percentiles.")
    n_warmup: int = Field(default=3, ge=0, description="Untimed warm-up batches.")
    min_seconds: float = Field(default=2.0, ge=0, description="Keep timing batches until at least this long has passed, "
                               "so the energy tracker samples a meaningful span (at most 10,000 batches).")
    max_seconds: float = Field(default=10.0, gt=0, description="Cap of the timed loop: no batch starts after this long, "
                               "even short of n_repeats, so the loop ends within max_seconds plus one batch (at least "
                               "one batch is timed; the report gives the number of timed batches).")
    batch_size: int | None = Field(default=None, gt=0, description="Batch size of the timed loop (default: the audit's).")
    measure_energy: bool = Field(default=True, description="Track energy with CodeCarbon's offline tracker.")
    inferences_per_year: float | None = Field(default=None, gt=0, description="Expected yearly inference volume, for projections.")
    training_watts: float | None = Field(default=None, gt=0, description="Average power of the training hardware (W), if known.")
    training_hours: float | None = Field(default=None, gt=0, description="Training time in hours, if known.")


    @model_validator(mode="after")
    def _time_window(self) -> EfficiencyConfig:
        if self.min_seconds > self.max_seconds:
            raise ValueError(f"min_seconds ({self.min_seconds:g}) is above max_seconds ({self.max_seconds:g}): the "
                             "timed loop cannot last at least the one and at most the other; lower min_seconds or "
                             "raise max_seconds")
        return self


def timed_batches(run_batch: Callable[[], Any], *, n_repeats: int, min_seconds: float,
                  max_seconds: float, max_batches: int = 10_000) -> list[float]:
    """Wall times of ``run_batch()`` calls: at least ``n_repeats`` and ``min_seconds`` long, but no call
    starts once ``max_seconds`` have passed (the first always runs), so the loop ends within
    ``max_seconds`` plus one batch."""
    times: list[float] = []
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if times and elapsed >= max_seconds:
            break
        if len(times) >= n_repeats and (elapsed >= min_seconds or len(times) >= max_batches):
            break
        t0 = time.perf_counter()
        run_batch()
        times.append(time.perf_counter() - t0)
    return times


def count_flops(module: torch.nn.Module, example: Any) -> int | None:
    """FLOPs of one forward pass (``torch.utils.flop_counter``); None where it cannot count."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            module(**example) if isinstance(example, dict) else module(example)
    except Exception:  # noqa: BLE001 - some graphs (TorchScript, exported) cannot be traced by the counter
        return None
    return int(counter.get_total_flops())


_COUNTED = "torch.utils.flop_counter on one sample (matmul/conv FLOPs; elementwise ops not counted)"


def variant_flops(adapter: Any, module: torch.nn.Module, example: Any) -> tuple[int | None, str]:
    """FLOPs of one forward pass and how they were counted.

    torch's counter does not see quantised kernels (dynamic int8 ``nn.Linear``/LSTM): on an int8
    variant it counts only the layers left in float, so an int8 MLP would report 0 FLOPs. A quantised
    layer runs the same multiply-accumulates as its float original, in int8, so a quantised variant
    that counts fewer FLOPs than its float twin (the base model) reports the twin's count, and says so.
    """
    flops = count_flops(module, example)
    meta = adapter.variant_metadata or {}
    twin = adapter.float_twin
    layers = meta.get("quantised_layers")
    if flops is None or not layers or twin is None:
        return flops, _COUNTED
    twin_module = twin.torch_model
    twin_flops = count_flops(twin_module, example) if twin_module is not None else None
    if twin_flops is None or twin_flops <= flops:
        return flops, _COUNTED
    return twin_flops, (f"{_COUNTED}, on the float model: torch's counter does not see the quantised kernels of this "
                        f"variant ({layers}; it counted {flops:,}), which run the same multiply-accumulates in int8 "
                        f"({meta.get('dtype', 'int8')})")


@register_check("efficiency")
class Efficiency(Check):
    """Inference cost of the model on this machine."""

    category = "energy"
    title = "Efficiency, energy and carbon"
    Config = EfficiencyConfig
    metric_names = ("latency_p50_ms", "latency_p95_ms", "throughput", "energy_per_1000_wh", "co2_per_1000_g",
                    "n_parameters", "model_size_mb", "flops_per_sample", "yearly_energy_kwh", "yearly_co2_kg",
                    "training_energy_kwh", "training_co2_kg", "weight_sparsity")

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: EfficiencyConfig = self.config  # type: ignore[assignment]
        adapter, ev = ctx.adapter, ctx.dataset("eval")
        bs = min(cfg.batch_size or ctx.batch_size, len(ev))
        batch = adapter.to_batch(ev.inputs[:bs])
        sync = torch.cuda.synchronize if adapter.device.type == "cuda" else (lambda: None)
        with torch.no_grad():
            for _ in range(cfg.n_warmup):
                adapter.logits(batch)
            sync()
            meter, meter_error = None, None
            if cfg.measure_energy:
                from audit.energy import EnergyMeter

                try:
                    meter = EnergyMeter(ctx.country_iso_code).__enter__()
                except Exception as exc:  # noqa: BLE001 - an unreadable meter is reported, it does not stop timing
                    meter_error = f"CodeCarbon could not start ({type(exc).__name__}: {exc})"
            def run_batch() -> None:
                adapter.logits(batch)
                sync()

            try:
                times = timed_batches(run_batch, n_repeats=cfg.n_repeats, min_seconds=cfg.min_seconds,
                                      max_seconds=cfg.max_seconds)
            finally:
                if meter is not None:
                    try:
                        meter.__exit__(None, None, None)
                    except Exception as exc:  # noqa: BLE001
                        meter, meter_error = None, f"CodeCarbon could not be read ({type(exc).__name__}: {exc})"
        times_ms = np.array(times) * 1000
        n_inf = bs * len(times)
        device = f"{adapter.device}" + (f" ({torch.cuda.get_device_name(adapter.device)})" if adapter.device.type == "cuda" else "")
        timing = f"{len(times)} timed batches of {bs} after {cfg.n_warmup} warm-up batches on {device}"
        capped = len(times) < cfg.n_repeats
        p50, p95 = (float(v) for v in np.percentile(times_ms, [50, 95]))
        metrics = [
            Metric(name="latency_p50_ms", value=p50, n=len(times), unit="ms/batch", higher_is_better=False,
                   method=f"median wall time per batch; {timing}"),
            Metric(name="latency_p95_ms", value=p95, n=len(times), unit="ms/batch", higher_is_better=False,
                   method=f"95th percentile wall time per batch; {timing}"),
            Metric(name="throughput", value=float(n_inf / times_ms.sum() * 1000), n=n_inf, unit="samples/s",
                   higher_is_better=True, method=f"samples over total timed wall time; {timing}"),
        ]
        rows = [["device", device], ["batch size", bs], ["timed batches", len(times)]]
        limitations = ["Timings are for this machine, batch size and load; other hardware differs."]
        if capped:
            limitations.append(f"The timed loop stopped at max_seconds = {cfg.max_seconds:g} s after {len(times)} of "
                               f"n_repeats = {cfg.n_repeats} batches: the latency percentiles rest on {len(times)} "
                               "run(s).")
        module = adapter.torch_model
        if module is not None:
            n_params = sum(p.numel() for p in module.parameters())
            metrics += [
                Metric(name="n_parameters", value=float(n_params), n=1, unit="parameters", higher_is_better=False,
                       method="sum of parameter element counts"),
                Metric(name="model_size_mb", value=state_dict_bytes(module) / 2**20, n=1, unit="MiB",
                       higher_is_better=False,
                       method="bytes of torch.save(state_dict): the size on disk (quantised weights packed, "
                              "pruned zeros stored densely)"),
            ]
            sparsity = weight_sparsity(module)
            if sparsity is not None:
                metrics.append(Metric(name="weight_sparsity", value=sparsity, n=1, higher_is_better=None,
                                      method="fraction of exactly-zero weights in dense Linear/Conv layers"))
                if sparsity >= 0.1:
                    limitations.append(f"{sparsity:.0%} of the weights are zero but stored and multiplied densely: "
                                       "no size or latency saving follows without a sparse format or kernel.")
            example = adapter.encode(ev.inputs[:1]) if adapter.capabilities.tokenizer else adapter.to_batch(ev.inputs[:1])
            if not isinstance(example, dict) and adapter.preprocess is not None:
                example = adapter.preprocess(example.float())
            flops, how = variant_flops(adapter, module, example)
            if flops is not None:
                metrics.append(Metric(name="flops_per_sample", value=float(flops), n=1, unit="FLOP",
                                      higher_is_better=False, provenance="estimated", method=how))
            else:
                limitations.append("FLOPs could not be counted for this model format.")
        else:
            limitations.append(f"Parameter count, size and FLOPs are not available for a {adapter.format} model.")

        reading = meter.record if meter is not None else None
        if reading is not None and reading.energy_kwh > 0:
            per_1000_wh = reading.energy_kwh * 1000 / n_inf * 1000
            per_1000_g = reading.co2_kg * 1000 / n_inf * 1000
            src = "; ".join(f"{k}: {v}" for k, v in reading.sources.items())
            how = (f"CodeCarbon offline tracker around the timed loop ({reading.duration_s:.2f} s, {n_inf} inferences); "
                   f"{src}")
            metrics += [
                Metric(name="energy_per_1000_wh", value=per_1000_wh, n=n_inf, unit="Wh/1000 inferences",
                       higher_is_better=False, provenance=reading.provenance, method=how),
                Metric(name="co2_per_1000_g", value=per_1000_g, n=n_inf, unit="gCO2eq/1000 inferences",
                       higher_is_better=False, provenance="estimated",
                       method=f"energy times the grid carbon intensity of {reading.country_iso_code} "
                              f"({1000 * reading.co2_kg / reading.energy_kwh:.0f} g/kWh, CodeCarbon data; "
                              "set energy.country_iso_code)"),
            ]
            rows += [[f"energy source: {k}", v] for k, v in reading.sources.items()]
            if reading.provenance == "estimated":
                limitations.append("Energy is estimated, not measured: no readable hardware energy counter "
                                   "(RAPL/NVML) covered every component; CodeCarbon modelled the rest.")
            if cfg.inferences_per_year:
                yearly_kwh = per_1000_wh / 1000 * cfg.inferences_per_year / 1000
                metrics += [
                    Metric(name="yearly_energy_kwh", value=yearly_kwh, n=n_inf, unit="kWh/year", higher_is_better=False,
                           provenance="estimated",
                           method=f"energy per inference times {cfg.inferences_per_year:g} inferences/year (projection)"),
                    Metric(name="yearly_co2_kg", value=per_1000_g / 1000 * cfg.inferences_per_year / 1000, n=n_inf,
                           unit="kgCO2eq/year", higher_is_better=False, provenance="estimated",
                           method=f"CO2 per inference times {cfg.inferences_per_year:g} inferences/year (projection)"),
                ]
        elif cfg.measure_energy:  # not measured is null with the reason, never zero
            why = meter_error or "CodeCarbon returned no energy for the timed loop (too short to sample)"
            limitations.append(f"Energy was not measured: {why}.")
            metrics += [Metric(name=name, value=None, n=n_inf, unit=unit, higher_is_better=False,
                               method=f"not measured: {why}")
                        for name, unit in (("energy_per_1000_wh", "Wh/1000 inferences"),
                                           ("co2_per_1000_g", "gCO2eq/1000 inferences"))]
        if cfg.training_watts and cfg.training_hours:
            train_kwh = cfg.training_watts * cfg.training_hours / 1000
            metrics.append(Metric(name="training_energy_kwh", value=train_kwh, n=1,
                                  unit="kWh", higher_is_better=False, provenance="estimated",
                                  method=f"stated hardware power {cfg.training_watts:g} W times {cfg.training_hours:g} h"))
            intensity, year = grid_carbon_intensity(ctx.country_iso_code)
            if intensity is not None:
                metrics.append(Metric(
                    name="training_co2_kg", value=train_kwh * intensity / 1000, n=1, unit="kgCO2eq",
                    higher_is_better=False, provenance="estimated",
                    method=(f"stated training energy times the {year} grid carbon intensity of {ctx.country_iso_code} "
                            f"({intensity:.0f} g/kWh, CodeCarbon's energy-mix data; set energy.country_iso_code)")))
            else:
                limitations.append(f"No grid carbon intensity for {ctx.country_iso_code!r} in CodeCarbon's data: "
                                   "training CO2 is not estimated.")
        summary = (f"{p50:.2f} ms per batch of {bs} (p95 {p95:.2f} ms, {len(times)} timed batches), "
                   f"{metrics[2].value:.0f} samples/s on {adapter.device}")
        energy = next((m for m in metrics if m.name == "energy_per_1000_wh"), None)
        if energy is not None and energy.value is not None:
            summary += f"; {energy.value:.3g} Wh per 1,000 inferences ({energy.provenance})"
        return CheckOutput(summary=summary + ".", metrics=metrics, dataset="eval", n_samples=bs,  # rows used (timed repeatedly)
                           evidence=[Table(title="Measurement set-up", columns=["item", "value"], rows=rows)],
                           method=("Batches are taken from the evaluation set and run through the adapter (preprocessing "
                                   "included) with gradients off. " + timing + f" (at least n_repeats = {cfg.n_repeats} "
                                   f"and min_seconds = {cfg.min_seconds:g} s, no batch started after max_seconds = "
                                   f"{cfg.max_seconds:g} s)."),
                           limitations=limitations)


def grid_carbon_intensity(country_iso_code: str) -> tuple[float | None, int | None]:
    """Carbon intensity (gCO2eq/kWh) and data year of a country's grid from CodeCarbon's bundled energy-mix
    data (offline); ``(None, None)`` when the country is not in it."""
    try:
        from codecarbon.input import DataSource

        row = DataSource().get_global_energy_mix_data().get(country_iso_code.upper())
    except Exception:  # noqa: BLE001 - an optional estimate; its absence is stated in the limitations
        return None, None
    if not row or row.get("carbon_intensity") is None:
        return None, None
    return float(row["carbon_intensity"]), int(row.get("year") or 0) or None
