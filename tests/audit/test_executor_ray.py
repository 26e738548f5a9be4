"""``executor: ray``: the same numbers as the local executor, on a local two-CPU cluster shared by the module
(``ray.init`` costs seconds), with the model built in each worker from the config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from safetensors.torch import save_file
from tiny_models import TINY_CNN_CLASS, TinyCNN
from typer.testing import CliRunner

import cli
from audit.compare import run_compare
from audit.config import load_config
from audit.errors import InputError
from audit.executor import _sum_footprints, ray_session
from audit.registry import list_checks
from audit.results import EnergyRecord
from audit.runner import run_audit

CHECKS = ("performance", "corruption", "ood")
FAST = ["checks.performance={n_resamples: 30, thresholds: {informative_p_value: {max: 1}, baseline_lift: {min: -1000}}}",
        "checks.corruption={max_samples: 20, severities: [1, 5]}", "checks.ood.n_synthetic=30", "energy.track=false",
        "model.allow_nonfinite=true", *[f"checks.{c}.enabled=false" for c in list_checks() if c not in CHECKS]]


@pytest.fixture(scope="module")
def cluster(files: tuple[Path, Path]):  # noqa: ANN201
    """One local cluster for the module, started as an audit starts it: two CPUs, so two workers run checks
    side by side; every audit in the module finds it running and leaves it so; stopped at the end."""
    with ray_session(config(files, "ray.num_cpus=2")):
        assert ray.cluster_resources()["CPU"] == 2
        yield
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny CNN as safetensors (built from its class in each worker) and 60 images, 3 of them so large that
    the logits overflow to NaN (excluded by model.allow_nonfinite: the workers must drop the same rows)."""
    folder = tmp_path_factory.mktemp("ray")
    torch.manual_seed(0)
    weights = folder / "cnn.safetensors"
    save_file(TinyCNN().eval().state_dict(), str(weights))
    rng = np.random.default_rng(0)
    x = rng.random((60, 1, 8, 8), dtype=np.float32)
    x[[3, 17, 40]] = 3e38
    data = folder / "images.npz"
    np.savez(data, x=x, y=rng.integers(0, 3, 60))
    return weights, data


def config(files: tuple[Path, Path], *sets: str):  # noqa: ANN201
    weights, data = files
    return load_config(None, {"model.path": str(weights), "model.class": TINY_CNN_CLASS, "data.eval.path": str(data),
                              "device": "cpu", "threads": 1}, [*FAST, *sets])


def numbers(result) -> list:  # noqa: ANN001
    """What must not depend on the executor: each check's status, metrics, thresholds and summary."""
    return [(c.id, c.status, c.summary, [m.model_dump() for m in c.metrics], [t.model_dump() for t in c.thresholds],
             c.n_samples) for c in result.checks]


def test_ray_audit_equals_local(cluster: None, files: tuple[Path, Path]) -> None:
    local = run_audit(config(files))
    seen: list[str] = []
    on_ray = run_audit(config(files, "executor=ray"), on_check=lambda r: seen.append(r.id))
    assert [c.id for c in local.checks] == list(CHECKS) == seen  # merged in the fixed order
    assert numbers(on_ray) == numbers(local)
    assert on_ray.probe == local.probe and local.probe.nonfinite_rows == 3
    assert on_ray.checks[0].n_samples == 57  # the workers dropped the rows the driver's probe excluded
    execution = on_ray.provenance.execution
    assert (execution.executor, execution.workers) == ("ray", 2) and execution.threads.threads == 1
    assert "Ray tasks on 2 worker(s) of a local cluster with 2 CPUs" in execution.method
    assert local.provenance.execution.executor == "local"


def test_ray_compare_equals_local(cluster: None, files: tuple[Path, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    torch.manual_seed(1)
    save_file(TinyCNN().eval().state_dict(), str(other))
    args = {"variants": ["pruned:0.5"], "models": [other]}
    local = run_compare(config(files, "checks.corruption.enabled=false"), **args)
    labels: list[str] = []
    on_ray = run_compare(config(files, "checks.corruption.enabled=false", "executor=ray"),
                         on_model=lambda e: labels.append(e.label), **args)
    assert [e.label for e in on_ray.entries] == [e.label for e in local.entries] == labels == ["base", "pruned:0.5", "other"]
    for a, b in zip(local.entries, on_ray.entries):
        assert numbers(a.result) == numbers(b.result) and a.metadata == b.metadata
        assert b.result.provenance.execution.executor == "ray" and b.result.provenance.model == a.result.provenance.model
    assert numbers(local.entries[0].result) != numbers(local.entries[2].result)  # the models do differ


def test_bad_input_found_in_a_worker_exits_2_with_its_line(cluster: None, files: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    """A reference set with NaN logits is found only when a check (privacy) computes them, inside a worker."""
    ref = tmp_path / "ref.npz"
    np.savez(ref, x=np.full((10, 1, 8, 8), 3e38, dtype=np.float32), y=np.zeros(10, dtype=np.int64))
    out = tmp_path / "out"
    weights, data = files
    result = CliRunner().invoke(cli.app, ["audit", "--model", str(weights), "--model-class", TINY_CNN_CLASS, "--data",
                                          str(data), "--reference", str(ref), "--out", str(out), "--quiet",
                                          "--executor", "ray", *[a for s in FAST for a in ("--set", s)],
                                          "--set", "checks.ood.enabled=false", "--set", "checks.corruption.enabled=false",
                                          "--set", "checks.performance.enabled=false", "--set", "checks.privacy.enabled=true"])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepaudit: error: ") and "rows of data.reference give non-finite" in lines[0], lines
    assert "Traceback" not in result.stderr and "ray::" not in result.stderr


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_silences_rays_own_log_lines_but_not_its_errors(quiet: bool, files: tuple[Path, Path]) -> None:
    """``ray.init`` logs "Token authentication is enabled ..." (a warning) on every new local cluster; with
    --quiet the CLI lets only Ray's errors through."""
    import logging

    from ray._private.authentication import authentication_token_setup

    ray_logger, seen = logging.getLogger("ray"), []
    children = [authentication_token_setup.logger, logging.getLogger("ray._private.worker")]
    saved = (ray_logger.level, [(c.disabled, c.propagate) for c in children])
    for child in children:  # a ray.init earlier in the process may have reconfigured them (the module's cluster)
        child.disabled, child.propagate = False, True
    ray_logger.setLevel(logging.INFO)  # as Ray's import leaves it (an earlier --quiet CLI run here raised it)

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    catch = Catch()
    ray_logger.addHandler(catch)
    try:
        cli._require_executor(config(files, "executor=ray"), quiet)
        authentication_token_setup._warn_token_auth_enabled()  # what ray.init logs, through Ray's own logger
        children[1].error("a worker died")
    finally:
        ray_logger.removeHandler(catch)
        ray_logger.setLevel(saved[0])
        for child, (disabled, propagate) in zip(children, saved[1]):
            child.disabled, child.propagate = disabled, propagate
    assert "a worker died" in seen
    assert any(m.startswith("Token authentication is enabled") for m in seen) is not quiet


@pytest.mark.parametrize("command", ["audit", "compare"])
def test_without_ray_executor_ray_exits_2_with_the_install_line(command: str, files: tuple[Path, Path],
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError, as when it is not installed
    weights, data = files
    out = tmp_path / "out"
    args = [command, "--model", str(weights), "--data", str(data), "--out", str(out), "--quiet", "--executor", "ray",
            "--set", f"model.class={TINY_CNN_CLASS}", *(["--variant", "pruned:0.5"] if command == "compare" else [])]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == ("deepaudit: error: executor ray needs Ray, an optional extra that is not "
                                     "installed; install it with: pip install 'deepaudit[ray]'")
    assert not out.exists()
    cfg = config(files, "executor=ray")
    with pytest.raises(InputError, match=r"pip install 'deepaudit\[ray\]'"):
        run_audit(cfg)  # the library refuses too, before loading anything


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:{port}", "ray.address '127.0.0.1:{port}' (--ray-address): nothing answers at 127.0.0.1:{port}"),
    ("ray://127.0.0.1:{port}", "nothing answers at 127.0.0.1:{port}"),
    ("headnode", "must be auto, HOST:PORT or ray://HOST:PORT"),
])
def test_a_cluster_address_nobody_answers_exits_2_at_once(address: str, message: str, files: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    """Ray retries an unreachable address for minutes; the audit says so in one line before any work."""
    import socket
    import time

    with socket.socket() as free:  # a port nothing listens at
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    weights, data = files
    out = tmp_path / "out"
    start = time.perf_counter()
    result = CliRunner().invoke(cli.app, ["audit", "--model", str(weights), "--model-class", TINY_CNN_CLASS, "--data",
                                          str(data), "--out", str(out), "--quiet", "--executor", "ray",
                                          "--ray-address", address.format(port=port)])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message.format(port=port) in lines[0], lines
    assert time.perf_counter() - start < 20 and not out.exists()


def test_unknown_executor_exits_2(files: tuple[Path, Path], tmp_path: Path) -> None:
    weights, data = files
    result = CliRunner().invoke(cli.app, ["audit", "--model", str(weights), "--data", str(data), "--out",
                                          str(tmp_path / "o"), "--executor", "dask"])
    assert result.exit_code == 2 and "key 'executor'" in result.stderr and "'local' or 'ray'" in result.stderr


def _record(kwh: float, provenance: str = "measured") -> EnergyRecord:
    return EnergyRecord(duration_s=1.0, energy_kwh=kwh, co2_kg=kwh / 2, provenance=provenance,
                        sources={"cpu": "measured (intel_rapl)"}, country_iso_code="USA")


def test_footprint_sums_the_workers_and_is_estimated_when_they_overlap() -> None:
    one = _sum_footprints([_record(1.0)], 5.0)
    assert one.provenance == "measured" and one.energy_kwh == 1.0 and one.duration_s == 5.0
    two = _sum_footprints([_record(1.0), _record(2.0)], 5.0)
    assert two.provenance == "estimated" and two.energy_kwh == 3.0 and two.co2_kg == 1.5
    assert "2 Ray worker(s)" in two.method
    assert _sum_footprints([_record(1.0), None], 5.0) is None  # a worker without a reading: no partial total
    assert _sum_footprints([], 5.0) is None
