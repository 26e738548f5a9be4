"""Energy accounting: per-check records add up to the audit's footprint and are labelled."""

from __future__ import annotations

import time

import pytest

from audit.energy import AuditTracker, EnergyMeter


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def test_tasks_add_up_to_footprint() -> None:
    tracker = AuditTracker("DEU")
    assert tracker.available, tracker.error
    records = []
    for name in ("a", "b"):
        with tracker.task(name) as box:
            busy(0.3)
        records.append(box[0])
    total = tracker.close()
    assert total is not None
    assert total.energy_kwh == pytest.approx(sum(r.energy_kwh for r in records), rel=0.05)
    assert total.duration_s >= sum(r.duration_s for r in records)
    for r in (*records, total):
        assert r.energy_kwh > 0 and r.co2_kg > 0 and r.country_iso_code == "DEU"
        assert r.provenance in ("measured", "estimated") and "cpu" in r.sources
        # The label follows the sources: measured only if every component was read from hardware.
        assert (r.provenance == "measured") == all(v.startswith("measured") for v in r.sources.values())


def test_meter_records_one_span() -> None:
    with EnergyMeter("FRA") as meter:
        busy(0.2)
    assert meter.record is not None and meter.record.duration_s >= 0.2
    # France's grid is far less carbon-intensive than Germany's in CodeCarbon's data.
    with EnergyMeter("DEU") as de:
        busy(0.2)
    assert meter.record.co2_kg / meter.record.energy_kwh < de.record.co2_kg / de.record.energy_kwh
