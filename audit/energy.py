"""Energy and carbon measurement with CodeCarbon's offline tracker (no network).

Every reading says whether it was **measured** (RAPL or another hardware counter for the CPU,
NVML for NVIDIA GPUs) or **estimated** (CodeCarbon's model from the CPU's TDP and load, or its
RAM power model), and which source CodeCarbon used for each component.

- :class:`EnergyMeter` measures one span (the efficiency check's inference benchmark).
- :class:`AuditTracker` measures the whole audit and each check inside it, with one tracker and
  CodeCarbon's task API, so the per-check cost is one measurement, not one tracker start.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from audit.results import EnergyRecord

#: CodeCarbon CPU modes that read a hardware energy counter.
MEASURED_CPU_MODES = {"intel_rapl", "intel_power_gadget", "apple_powermetrics", "windows_emi"}


def _new_tracker(country_iso_code: str, output_dir: str) -> Any:
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    return OfflineEmissionsTracker(
        country_iso_code=country_iso_code, log_level="error", save_to_file=False, tracking_mode="process",
        measure_power_secs=1, output_dir=output_dir, allow_multiple_runs=True,
    )


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
    out.setdefault("cpu", "estimated (CodeCarbon default)")
    return out


def to_record(data: Any, tracker: Any, country_iso_code: str, method: str) -> EnergyRecord:
    """An ``EnergyRecord`` from CodeCarbon's ``EmissionsData``; measured only if every
    component that used energy was read from a hardware counter."""
    sources = _sources(tracker)
    parts = {"cpu": data.cpu_energy, "gpu": data.gpu_energy, "ram": data.ram_energy}
    measured = all(sources.get(c, "").startswith("measured") for c, e in parts.items() if e > 0)
    return EnergyRecord(duration_s=float(data.duration), energy_kwh=float(data.energy_consumed),
                        co2_kg=float(data.emissions), provenance="measured" if measured else "estimated",
                        sources=sources, country_iso_code=country_iso_code, method=method)


class EnergyMeter:
    """Measure one span: ``with EnergyMeter("DEU") as m: ...``, then ``m.record``."""

    def __init__(self, country_iso_code: str = "USA") -> None:
        self.country_iso_code = country_iso_code
        self.record: EnergyRecord | None = None

    def __enter__(self) -> EnergyMeter:
        self._tmp = tempfile.TemporaryDirectory(prefix="deepaudit-cc-")
        self._tracker = _new_tracker(self.country_iso_code, self._tmp.name)
        self._tracker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._tracker.stop()
            self.record = to_record(self._tracker.final_emissions_data, self._tracker, self.country_iso_code,
                                    "CodeCarbon offline tracker around the measured span")
        finally:
            self._tmp.cleanup()


class AuditTracker:
    """One tracker for a whole audit; ``task(name)`` measures a check inside it.

    Energy accounting must never break an audit, and a failure must never pass for a reading: if
    CodeCarbon cannot start, ``available`` is False and every record is None; every failure (start,
    a task, the final stop) is kept in ``errors`` (``error`` is the first), for the runner to record
    in the results and the report to show.
    """

    def __init__(self, country_iso_code: str = "USA") -> None:
        self.country_iso_code = country_iso_code
        self.errors: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="deepaudit-cc-")
        self._started = time.perf_counter()
        try:
            self._tracker = _new_tracker(country_iso_code, self._tmp.name)
            self._tracker.start()
        except Exception as exc:  # noqa: BLE001 - optional measurement; the audit goes on
            self._tracker = None
            self._fail("CodeCarbon could not start", exc)

    @property
    def available(self) -> bool:
        return self._tracker is not None

    @property
    def error(self) -> str | None:
        """The first failure, or ``None``."""
        return self.errors[0] if self.errors else None

    def _fail(self, where: str, exc: BaseException) -> str:
        message = f"{where}: {type(exc).__name__}: {exc}".strip()
        self.errors.append(message)
        return message

    @contextlib.contextmanager
    def task(self, name: str) -> Iterator[list[EnergyRecord]]:
        """Yields a list that holds the record once the block ends."""
        box: list[EnergyRecord] = []
        if self._tracker is None:
            yield box
            return
        try:
            self._tracker.start_task(name)
        except Exception as exc:  # noqa: BLE001
            self._fail(f"task '{name}' could not start", exc)
            yield box
            return
        try:
            yield box
        finally:
            try:
                data = self._tracker.stop_task(name)
                if data is not None:
                    box.append(to_record(data, self._tracker, self.country_iso_code,
                                         f"CodeCarbon offline tracker, task '{name}'"))
            except Exception as exc:  # noqa: BLE001
                self._fail(f"task '{name}' could not be read", exc)

    def close(self) -> EnergyRecord | None:
        """Stop tracking; the record of the whole audit."""
        try:
            if self._tracker is None:
                return None
            self._tracker.stop()
            record = to_record(self._tracker.final_emissions_data, self._tracker, self.country_iso_code,
                               "CodeCarbon offline tracker around the whole audit")
            # CodeCarbon's duration after task mode is the last task's; the span is ours to time.
            return record.model_copy(update={"duration_s": time.perf_counter() - self._started})
        except Exception as exc:  # noqa: BLE001
            self._fail("the whole-audit reading failed", exc)
            return None
        finally:
            self._tmp.cleanup()
