"""The thread count: its default rule, that it reaches torch, the BLAS pools and the provenance, and
that a bad value exits 2 before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import audit.threads as T
import cli
from audit.registry import list_checks

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_threads():  # noqa: ANN202
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(1):  # the tests leave the BLAS pools as the other tests expect them
        yield
    torch.set_num_threads(before)


def only_performance() -> list[str]:
    """--set items that turn every check off but performance (a fast audit)."""
    out = []
    for cid in list_checks():
        if cid != "performance":
            out += ["--set", f"checks.{cid}.enabled=false"]
    return out + ["--set", "checks.performance={n_resamples: 20, thresholds: {informative_p_value: {max: 1}, "
                           "baseline_lift: {min: -1000}}}", "--set", "energy.track=false"]


def test_default_is_the_cores_available_or_a_smaller_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert T.resolve_threads(None, cores=4) == (4, "the 4 cores available to the process (CPU affinity and quota)")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert T.resolve_threads(None, cores=4)[0] == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "16")  # more than the cores: oversubscription, not followed
    assert T.resolve_threads(None, cores=4)[0] == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert T.resolve_threads(None, cores=4)[0] == 4


def test_a_request_above_the_cores_is_capped_and_says_so() -> None:
    assert T.resolve_threads(3, cores=4) == (3, "threads (config or --threads)")
    threads, source = T.resolve_threads(8, cores=2)
    assert threads == 2 and source == "threads 8 capped at the 2 cores available to the process"


def test_cores_available_follows_affinity_and_a_cgroup_quota(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(T.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3, 4, 5})
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(T, "CGROUP_CPU_MAX", quota)
    assert T.cores_available() == 6  # no cgroup file
    quota.write_text("max 100000\n")
    assert T.cores_available() == 6
    quota.write_text("250000 100000\n")  # 2.5 CPUs of quota: 3 threads
    assert T.cores_available() == 3


def test_apply_threads_sets_torch_and_blas(monkeypatch: pytest.MonkeyPatch) -> None:
    from threadpoolctl import threadpool_info

    monkeypatch.setattr(T, "cores_available", lambda: 4)
    torch.set_num_threads(1)
    settings = T.apply_threads(2)
    assert torch.get_num_threads() == 2 and settings.torch_intra_op == 2 and settings.threads == 2
    assert settings.requested == 2 and settings.cores_available == 4
    assert settings.blas and set(settings.blas.values()) == {2}
    assert {p["num_threads"] for p in threadpool_info()} == {2}
    assert "2 CPU thread(s), from threads (config or --threads): torch intra-op 2" in T.describe_threads(settings)


def test_interop_pool_already_started_is_recorded_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_n: int) -> None:
        raise RuntimeError("Error: cannot set number of interop threads after parallel work has started")

    monkeypatch.setattr(torch, "get_num_interop_threads", lambda: 4)
    monkeypatch.setattr(torch, "set_num_interop_threads", refuse)
    settings = T.apply_threads(1)
    assert settings.torch_inter_op == 4
    assert settings.notes == ["torch's inter-op pool was already started with 4 threads in this process and cannot "
                              "be resized (the audit runs no inter-op work)"]
    assert "Note: torch's inter-op pool was already started" in T.describe_threads(settings)


def test_threads_flag_reaches_torch_provenance_and_report(tmp_path: Path, torchscript_file: Path, image_npz: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the default would be 1
    monkeypatch.setattr(T, "cores_available", lambda: 4)
    torch.set_num_threads(1)
    out = tmp_path / "out"
    result = runner.invoke(cli.app, ["audit", "--model", str(torchscript_file), "--data", str(image_npz), "--out",
                                     str(out), "--quiet", "--device", "cpu", "--threads", "2", *only_performance()])
    assert result.exit_code == 0, result.stderr
    assert torch.get_num_threads() == 2
    execution = json.loads((out / "results.json").read_text())["provenance"]["execution"]
    assert execution["executor"] == "local"
    assert execution["threads"]["requested"] == 2 and execution["threads"]["torch_intra_op"] == 2
    assert execution["threads"]["threads"] == 2 and execution["threads"]["cores_available"] == 4
    assert "2 CPU thread(s)" in execution["method"]
    assert execution["method"] in (out / "report.html").read_text()
    result = runner.invoke(cli.app, ["audit", "--model", str(torchscript_file), "--data", str(image_npz), "--out",
                                     str(out), "--quiet", "--device", "cpu", *only_performance()])
    assert result.exit_code == 0, result.stderr
    threads = json.loads((out / "results.json").read_text())["provenance"]["execution"]["threads"]
    assert threads["requested"] is None and threads["threads"] == 1 and torch.get_num_threads() == 1
    assert threads["source"] == "OMP_NUM_THREADS=1 (fewer than the 4 cores available)"


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], "key 'threads': input should be greater than 0; got 0."),
    (["--threads", "-2"], "key 'threads': input should be greater than 0; got -2."),
    (["--set", "threads=true"], "key 'threads': expected a number, not a boolean"),
    (["--set", "threads=1.5"], "key 'threads': input should be a valid integer"),
])
def test_bad_threads_exit_2_before_any_work(args: list[str], message: str, tmp_path: Path, torchscript_file: Path,
                                            image_npz: Path) -> None:
    for command in (["audit", "--model", str(torchscript_file), "--data", str(image_npz)],
                    ["compare", "--model", str(torchscript_file), "--data", str(image_npz), "--variant", "pruned:0.5"],
                    ["demo", "--only", "digits", "--cache", str(tmp_path / "cache")]):
        out = tmp_path / command[0]
        result = runner.invoke(cli.app, [*command, "--out", str(out), "--quiet", *args])
        assert result.exit_code == 2, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("deepaudit: error: ") and message in lines[0], lines
        assert not out.exists() and not (tmp_path / "cache").exists()
