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


def test_tracker_failures_are_recorded_and_shown(monkeypatch: pytest.MonkeyPatch, tmp_path, tabular_csv,
                                                 tiny_mlp) -> None:
    """An energy tracker that cannot start leaves the audit running, and the failure is in results.json, in each
    check's limitations and in the report: not an empty footprint that reads as 'energy tracking off'."""
    import json

    from safetensors.torch import save_file
    from tiny_models import TINY_MLP_CLASS

    import audit.energy
    from audit.config import load_config
    from audit.runner import run_audit
    from reports.html import render_html

    def broken(*_a: object, **_k: object) -> None:
        raise OSError("RAPL files are not readable")

    monkeypatch.setattr(audit.energy, "_new_tracker", broken)
    weights = tmp_path / "mlp.safetensors"
    save_file(tiny_mlp.state_dict(), str(weights))
    cfg_path = tmp_path / "audit.yaml"
    cfg_path.write_text(json.dumps({
        "version": 1, "model": {"path": str(weights), "class": TINY_MLP_CLASS},
        "data": {"eval": {"path": str(tabular_csv), "target": "label", "sensitive_features": ["sex"]}}, "device": "cpu",
        "energy": {"track": True}, "checks": {"performance": {"n_resamples": 10}}}))
    cfg = load_config(cfg_path, overrides={"checks": {c: {"enabled": False} for c in _all_checks() if c != "performance"}})
    result = run_audit(cfg)
    assert result.footprint is None
    assert result.energy_errors and "RAPL files are not readable" in result.energy_errors[0]
    perf = result.check("performance")
    assert perf.energy is None and any("energy of this check was not measured" in t and "RAPL" in t
                                        for t in perf.limitations)
    html = render_html(result)
    assert "Energy tracking failed" in html and "RAPL files are not readable" in html
    assert "Not tracked (energy.track is off)" not in html


def _all_checks() -> list[str]:
    from audit.registry import list_checks

    return list_checks()
