"""Energy and carbon measurement with CodeCarbon's offline tracker (no network).

Every reading says whether it was **measured** (RAPL or another hardware counter for the CPU,
NVML for NVIDIA GPUs) or **estimated** (CodeCarbon's model from the CPU's TDP and load, or its
fixed RAM power), and which source CodeCarbon used.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

#: CodeCarbon CPU modes that read a hardware energy counter.
MEASURED_CPU_MODES = {"intel_rapl", "intel_power_gadget", "apple_powermetrics", "windows_emi"}


@dataclass(frozen=True)
class EnergyReading:
    """Energy of one measured span."""

    duration_s: float
    energy_kwh: float
    cpu_kwh: float
    gpu_kwh: float
    ram_kwh: float
    co2_kg: float
    provenance: str  # "measured" or "estimated"
    sources: dict[str, str]  # component -> how it was obtained
    country_iso_code: str
    carbon_intensity_g_per_kwh: float | None


class EnergyMeter:
    """Context manager around CodeCarbon's ``OfflineEmissionsTracker``.

    >>> with EnergyMeter("DEU") as meter:
    ...     run_inference()
    >>> meter.reading.energy_kwh
    """

    def __init__(self, country_iso_code: str = "USA") -> None:
        self.country_iso_code = country_iso_code
        self.reading: EnergyReading | None = None
        self._tracker: Any = None

    def __enter__(self) -> EnergyMeter:
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self._tmp = tempfile.TemporaryDirectory(prefix="deepaudit-cc-")
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=self.country_iso_code, log_level="error", save_to_file=False, tracking_mode="process",
            measure_power_secs=1, output_dir=self._tmp.name, allow_multiple_runs=True,
        )
        self._tracker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        tracker = self._tracker
        try:
            emissions = tracker.stop() or 0.0
            data = tracker.final_emissions_data
            sources = _sources(tracker)
            parts = {"cpu": data.cpu_energy, "gpu": data.gpu_energy, "ram": data.ram_energy}
            measured = all(sources.get(c, "").startswith("measured") for c, e in parts.items() if e > 0)
            self.reading = EnergyReading(
                duration_s=float(data.duration), energy_kwh=float(data.energy_consumed),
                cpu_kwh=float(data.cpu_energy), gpu_kwh=float(data.gpu_energy), ram_kwh=float(data.ram_energy),
                co2_kg=float(emissions), provenance="measured" if measured else "estimated",
                sources=sources, country_iso_code=self.country_iso_code,
                carbon_intensity_g_per_kwh=(1000 * emissions / data.energy_consumed) if data.energy_consumed else None,
            )
        finally:
            self._tmp.cleanup()


def _sources(tracker: Any) -> dict[str, str]:
    out = {}
    for hw in getattr(tracker, "_hardware", []):
        name = type(hw).__name__.lower()
        if name == "cpu":
            mode = str(getattr(hw, "_mode", "unknown"))
            out["cpu"] = (f"measured ({mode})" if mode in MEASURED_CPU_MODES
                          else f"estimated (CodeCarbon '{mode}' model: TDP scaled by load; no hardware counter readable)")
        elif name == "gpu":
            out["gpu"] = "measured (NVML)"
        elif name == "ram":
            out["ram"] = "estimated (CodeCarbon's RAM power model)"
    if "cpu" not in out:
        out["cpu"] = "estimated (CodeCarbon default)"
    return out


def rapl_readable() -> bool:
    """Whether the Linux RAPL energy counters exist (CodeCarbon then measures the CPU)."""
    return os.path.isdir("/sys/class/powercap/intel-rapl")
