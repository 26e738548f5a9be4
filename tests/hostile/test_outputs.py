"""Hostile output paths, concurrent runs, signals and injection strings: the outputs corpus.

Every case goes through the real CLI (in process where it can, a subprocess for signals and
concurrency) and asserts the exit code, the one-line message, the files written and that nothing
stray is left: no temporary or staging file, no lock, no browser process, no browser profile.
Bad paths are refused before the model is loaded (``no_work`` makes loading fail the test).
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from audit.results import (AuditResult, CheckResult, FileRecord, Metric, ModelInfo, Provenance, ThresholdOutcome,
                           summarise)
from reports import write_reports
from reports.lock import LOCK_NAME

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
SLOW_CHECKS = ("corruption", "adversarial", "explanations", "explanations.attention", "ood", "drift", "privacy",
               "poisoning.backdoor_simulation", "poisoning.backdoor_scan", "privacy.extraction", "efficiency",
               "fairness.group_metrics", "fairness.counterfactual_text")
FAST = [arg for check in SLOW_CHECKS for arg in ("--set", f"checks.{check}.enabled=false")] + [
    "--set", "checks.performance.n_resamples=20", "--set", "energy.track=false", "--quiet", "--device", "cpu"]


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def audit(model: Path, data: Path, out: Path, *extra: object) -> list[object]:
    return ["audit", "--model", model, "--data", data, "--out", out, *FAST, *extra]


def one_line_error(stderr: str, *fragments: str) -> None:
    """Exactly one line, the error prefix, every fragment, no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepaudit: error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def strays(*folders: Path) -> list[str]:
    """Temporary, staging, probe and lock files left under ``folders``."""
    pattern = re.compile(r"^\.(deepaudit-(staging|probe)-|.*\.tmp$)|^" + re.escape(LOCK_NAME))
    return [str(p) for f in folders if f.exists() for p in f.rglob("*") if pattern.search(p.name)]


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Loading the model or data fails the case: output paths must be refused before any work."""
    import audit.compare
    import audit.runner

    calls: list[str] = []

    def loaded(cfg: object) -> None:
        calls.append("load_inputs")
        raise RuntimeError("the model was loaded before the output paths were checked")

    monkeypatch.setattr(audit.runner, "load_inputs", loaded)
    monkeypatch.setattr(audit.compare, "load_inputs", loaded)
    return calls


@pytest.fixture
def scratch_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private system temp folder, so a leftover browser profile or temporary shows up."""
    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# ------------------------------------------------------------------------------------ inputs


def _image_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L").save(root / label / f"{i}.png")
    return root


def _hf_model_folder(root: Path) -> Path:
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForSequenceClassification"]}))
    return root


def _hf_dataset_folder(root: Path) -> Path:
    root.mkdir()
    (root / "dataset_info.json").write_text("{}")
    (root / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    return root


def _sys_probe_fails() -> bool:
    """/sys refuses new files even to root (sysfs), like a read-only mount does."""
    if not os.path.isdir("/sys"):
        return False
    try:
        fd, name = tempfile.mkstemp(dir="/sys")
    except OSError:
        return True
    os.close(fd)
    os.unlink(name)
    return False


def _file(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------- bad output paths

# Each case: (tmp, model, data) -> (extra CLI args replacing --out etc., fragments of the message).
PathCase = Callable[[Path, Path, Path], tuple[list[object], tuple[str, ...]]]

BAD_AUDIT_PATHS: dict[str, PathCase] = {
    "out is an existing file": lambda t, m, d: (["--out", _file(t / "out")], ("--out", "is an existing file")),
    "out under a file": lambda t, m, d: (["--out", _file(t / "f") / "out"], ("cannot be created", "is a file")),
    "out under /dev/null": lambda t, m, d: (["--out", "/dev/null/out"], ("cannot be created", "/dev/null")),
    "junit is a folder": lambda t, m, d: (["--out", t / "out", "--junit", t], ("--junit", "is a folder")),
    "markdown is a folder": lambda t, m, d: (["--out", t / "out", "--markdown", t], ("--markdown", "is a folder")),
    "junit under a file": lambda t, m, d: (["--out", t / "out", "--junit", _file(t / "f") / "j.xml"],
                                           ("--junit", "cannot be written", "is a file")),
    "markdown is a device": lambda t, m, d: (["--out", t / "out", "--markdown", "/dev/null"],
                                             ("--markdown", "not a regular file")),
    "junit and markdown on one file": lambda t, m, d: (["--out", t / "out", "--junit", t / "s", "--markdown", t / "s"],
                                                       ("name the same file",)),
    "junit is the report's results.json": lambda t, m, d: (["--out", t / "out", "--junit", t / "out" / "results.json"],
                                                           ("--junit", "the report's own results.json")),
    "markdown replaces the data file": lambda t, m, d: (["--out", t / "out", "--markdown", d],
                                                        ("--markdown", "is the input file", "data.eval.path")),
    "junit replaces the model file": lambda t, m, d: (["--out", t / "out", "--junit", m], ("--junit", "model.path")),
    "out is the image folder": lambda t, m, d: (["--data", _image_folder(t / "imgs"), "--out", t / "imgs"],
                                                ("inside the input folder", "data.eval.path")),
    "out inside the image folder": lambda t, m, d: (["--data", _image_folder(t / "imgs"), "--out", t / "imgs" / "a" / "o"],
                                                    ("inside the input folder", "data.eval.path")),
    "out inside the reference folder": lambda t, m, d: (["--reference", _image_folder(t / "ref"), "--out", t / "ref" / "o"],
                                                        ("inside the input folder", "data.reference.path")),
    "out inside the ood folder": lambda t, m, d: (["--ood", _image_folder(t / "ood"), "--out", t / "ood" / "o"],
                                                  ("inside the input folder", "data.ood.path")),
    "out inside a saved HF dataset": lambda t, m, d: (["--data", _hf_dataset_folder(t / "ds"), "--out", t / "ds" / "o"],
                                                      ("inside the input folder", "data.eval.path")),
    "out inside the HF model folder": lambda t, m, d: (["--model", _hf_model_folder(t / "hf"), "--out", t / "hf" / "o"],
                                                       ("inside the input folder", "model.path")),
    "markdown inside the image folder": lambda t, m, d: (["--data", _image_folder(t / "imgs"), "--out", t / "out",
                                                          "--markdown", t / "imgs" / "s.md"], ("--markdown", "inside the input folder")),
    "out through a relative path into the data": lambda t, m, d: (["--data", _image_folder(t / "imgs"),
                                                                   "--out", t / "imgs" / ".." / "imgs" / "b"],
                                                                  ("inside the input folder",)),
    "pdf without chromium": lambda t, m, d: (["--out", t / "out", "--pdf"], ("Chromium", "--no-pdf")),
}


@pytest.mark.parametrize("case", list(BAD_AUDIT_PATHS))
def test_bad_output_path_exits_2_before_any_work(case: str, tmp_path: Path, torchscript_file: Path, image_npz: Path,
                                                 no_work: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPAUDIT_CHROMIUM", str(tmp_path / "no-chromium"))
    work = tmp_path / "work"
    work.mkdir()
    extra, fragments = BAD_AUDIT_PATHS[case](work, torchscript_file, image_npz)
    before = snapshot(tmp_path)
    code, _, stderr = invoke(*audit(torchscript_file, image_npz, work / "default-out"), *extra)
    assert code == 2, stderr
    one_line_error(stderr, *fragments)
    assert no_work == [], "refused before the model and data were loaded"
    assert snapshot(tmp_path) == before, "nothing written, nothing changed"
    assert not (work / "out").is_dir() and not strays(tmp_path)


@pytest.mark.skipif(not _sys_probe_fails(), reason="needs a folder where even root cannot create files (/sys)")
@pytest.mark.parametrize("flag", ["--out", "--junit", "--markdown"])
def test_unwritable_mount_is_found_by_a_probe_file(flag: str, tmp_path: Path, torchscript_file: Path, image_npz: Path,
                                                   no_work: list[str]) -> None:
    """os.access says yes to root here; creating a file does not: the probe decides."""
    target = Path("/sys/deepaudit-out") if flag == "--out" else Path("/sys/deepaudit-report.xml")
    args = audit(torchscript_file, image_npz, tmp_path / "out")
    args += [flag, target] if flag != "--out" else ["--out", target]
    code, _, stderr = invoke(*args)
    assert code == 2 and no_work == []
    one_line_error(stderr, flag, "not writable")
    assert not target.exists() and not (tmp_path / "out").exists()


@pytest.mark.skipif(IS_ROOT, reason="root writes into a 0555 folder; the /sys case covers root")
def test_read_only_folder(tmp_path: Path, torchscript_file: Path, image_npz: Path, no_work: list[str]) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, stderr = invoke(*audit(torchscript_file, image_npz, locked / "out"))
    finally:
        locked.chmod(0o755)
    assert code == 2 and no_work == []
    one_line_error(stderr, "--out", "not writable")
    assert list(locked.iterdir()) == []


def test_output_dir_from_config_is_named_by_its_key(tmp_path: Path, torchscript_file: Path, image_npz: Path,
                                                    no_work: list[str]) -> None:
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(f"model: {{path: {torchscript_file}}}\ndata: {{eval: {{path: {image_npz}}}}}\noutput: {{dir: taken}}\n")
    _file(tmp_path / "taken")
    code, _, stderr = invoke("audit", "--config", cfg, *FAST)
    assert code == 2 and no_work == []
    one_line_error(stderr, "output.dir", "is an existing file")


def test_junit_into_the_config_file_is_refused(tmp_path: Path, torchscript_file: Path, image_npz: Path,
                                               no_work: list[str]) -> None:
    cfg = tmp_path / "audit.yaml"
    text = f"model: {{path: {torchscript_file}}}\ndata: {{eval: {{path: {image_npz}}}}}\n"
    cfg.write_text(text)
    code, _, stderr = invoke("audit", "--config", cfg, "--out", tmp_path / "out", "--junit", cfg, *FAST)
    assert code == 2 and no_work == []
    one_line_error(stderr, "--junit", "--config")
    assert cfg.read_text() == text


def test_compare_checks_its_output_first(tmp_path: Path, torchscript_file: Path, image_npz: Path,
                                         no_work: list[str]) -> None:
    taken = _file(tmp_path / "cmp")
    code, _, stderr = invoke("compare", "--model", torchscript_file, "--data", image_npz, "--variant", "fp16",
                             "--out", taken, "--device", "cpu", "--quiet")
    assert code == 2 and no_work == []
    one_line_error(stderr, "--out", "is an existing file")
    code, _, stderr = invoke("compare", "--model", torchscript_file, "--data", _image_folder(tmp_path / "imgs"),
                             "--with", torchscript_file, "--out", tmp_path / "imgs" / "cmp", "--quiet")
    assert code == 2 and no_work == []
    one_line_error(stderr, "inside the input folder")


@pytest.mark.parametrize("case", ["out is a file", "junit is a folder", "markdown replaces results.json",
                                  "pdf without chromium"])
def test_report_checks_its_outputs_first(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPAUDIT_CHROMIUM", str(tmp_path / "no-chromium"))
    results = _write_results(tmp_path / "a", "r-a")
    args, fragment = {
        "out is a file": lambda: (["--out", _file(tmp_path / "o")], "is an existing file"),
        "junit is a folder": lambda: (["--out", tmp_path / "o", "--junit", tmp_path], "is a folder"),
        "markdown replaces results.json": lambda: (["--out", tmp_path / "o", "--markdown", results], "is the input file"),
        "pdf without chromium": lambda: (["--out", tmp_path / "o", "--format", "pdf"], "Chromium"),
    }[case]()
    before = snapshot(tmp_path)
    code, _, stderr = invoke("report", results, *args)
    assert code == 2
    one_line_error(stderr, fragment)
    assert snapshot(tmp_path) == before and not strays(tmp_path)


def test_demo_checks_its_output_first(tmp_path: Path) -> None:
    taken = _file(tmp_path / "demo")
    start = time.monotonic()
    code, _, stderr = invoke("demo", "--only", "digits", "--out", taken, "--cache", tmp_path / "cache", "--quiet")
    assert code == 2 and time.monotonic() - start < 10
    one_line_error(stderr, "--out", "is an existing file")
    assert not (tmp_path / "cache").exists(), "nothing trained"


def test_existing_step_summary_file_is_replaced_and_keeps_its_mode(tmp_path: Path) -> None:
    """$GITHUB_STEP_SUMMARY exists (mode 0644 or tighter) before the step runs: it must still work."""
    summary = _file(tmp_path / "runner" / "step_summary_abc", "")
    summary.chmod(0o600)
    code, _, stderr = invoke("report", _write_results(tmp_path / "a", "r-a"), "--markdown", summary)
    assert code == 0, stderr
    assert summary.read_text().startswith("## deepaudit: ") and "report r-a" in summary.read_text()
    assert oct(summary.stat().st_mode & 0o777) == oct(0o600)
    assert sorted(p.name for p in summary.parent.iterdir()) == ["step_summary_abc"]


# ------------------------------------------------------------------------------------- the lock


def _lock(folder: Path, pid: int, host: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                "started": "2026-01-01T00:00:00+00:00", "command": "deepaudit audit"}))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_live_lock_refuses_a_second_run_naming_the_holder(tmp_path: Path, torchscript_file: Path, image_npz: Path,
                                                          no_work: list[str]) -> None:
    holder = subprocess.Popen(["sleep", "60"])
    try:
        out = tmp_path / "out"
        lock = _lock(out, holder.pid)
        before = snapshot(out)
        code, _, stderr = invoke(*audit(torchscript_file, image_npz, out))
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and no_work == []
    one_line_error(stderr, "being written by another deepaudit run", f"pid {holder.pid}", socket.gethostname(),
                   str(lock))
    assert snapshot(out) == before, "the holder's lock and folder are untouched"


@pytest.mark.parametrize("case", ["other host", "unreadable"])
def test_a_lock_that_cannot_be_judged_stale_is_respected(case: str, tmp_path: Path, torchscript_file: Path,
                                                        image_npz: Path, no_work: list[str]) -> None:
    out = tmp_path / "out"
    if case == "other host":
        _lock(out, _dead_pid(), host="build-agent-7.example")
        fragment = "on host build-agent-7.example"
    else:
        _file(out / LOCK_NAME, "\x00garbage")
        fragment = "cannot be read"
    before = snapshot(out)
    code, _, stderr = invoke(*audit(torchscript_file, image_npz, out))
    assert code == 2 and no_work == []
    one_line_error(stderr, fragment, "delete")
    assert snapshot(out) == before


def test_stale_lock_is_taken_over_with_a_note(tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    out = tmp_path / "out"
    dead = _dead_pid()
    _lock(out, dead)
    _file(out / ".deepaudit-staging-killedrun" / "report.html", "half a report")
    code, _, stderr = invoke(*audit(torchscript_file, image_npz, out))
    assert code in (0, 1), stderr  # the audit ran (its verdict is not the point here)
    assert f"took over the stale lock of pid {dead}" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.json"]
    assert not strays(out), "the lock is released and the killed run's staging folder removed"


def test_a_run_holds_the_lock_and_leaves_no_folder_on_bad_input(tmp_path: Path, torchscript_file: Path) -> None:
    out = tmp_path / "out"
    bad = _file(tmp_path / "bad.npz", "not an npz")
    code, _, stderr = invoke(*audit(torchscript_file, bad, out))
    assert code == 2 and "Traceback" not in stderr
    assert not out.exists(), "bad input found after the lock was taken still writes nothing"


# ---------------------------------------------------------------------- a fake, scriptable Chromium

FAKE_CHROMIUM = r"""#!/bin/sh
# Stands in for Chromium: uses its profile folder and TMPDIR like the real one, then prints, fails or hangs.
for arg in "$@"; do
  case "$arg" in
    --print-to-pdf=*) pdf="${arg#--print-to-pdf=}" ;;
    --user-data-dir=*) profile="${arg#--user-data-dir=}" ;;
  esac
done
mkdir -p "$profile" && echo prefs > "$profile/Preferences"
echo scratch > "${TMPDIR:-/tmp}/.org.chromium.fake.$$"
case "@MODE@" in
  print) printf '%%PDF-1.4 fake\n' > "$pdf"; exit 0 ;;
  fail) echo "fake chromium crashed" >&2; exit 1 ;;
esac
sleep 300 &
echo "$$ $!" > "@MARKER@.tmp" && mv "@MARKER@.tmp" "@MARKER@"
wait
"""


def fake_chromium(tmp_path: Path, mode: str) -> tuple[Path, Path]:
    """A fake browser script and the marker where a hanging one writes its pid and its child's."""
    marker = tmp_path / f"chromium-{mode}.pids"
    script = tmp_path / f"chromium-{mode}"
    script.write_text(FAKE_CHROMIUM.replace("@MODE@", mode).replace("@MARKER@", str(marker)))
    script.chmod(0o755)
    return script, marker


def _wait_for(path: Path, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended before the browser started: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _browser_gone(marker: Path) -> None:
    pids = [int(p) for p in marker.read_text().split()]
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)], "no browser process (nor its child) outlives the run"


def _result(report_id: str, *, model_path: str = "models/net.pt", payload: str = "") -> AuditResult:
    """A small hand-built result; ``payload`` goes into a class name, a group name, an exception, the model path,
    the model's name and owner and an attestation topic (which starts a line of the model card)."""
    metric = Metric(name="accuracy", value=0.9, n=100, ci_low=0.85, ci_high=0.94, ci_level=0.95, method="bootstrap")
    checks = [
        CheckResult(id="performance", category="performance", title="Predictive performance", status="pass",
                    summary=f"Accuracy 0.9 on 100 samples; worst class {payload or 'cat'}.", metrics=[metric],
                    limitations=[f"Class {payload or 'cat'} has 3 samples."],
                    thresholds=[ThresholdOutcome(metric="accuracy", min=0.8, observed=0.9, passed=True, source="config")]),
        CheckResult(id="fairness.group_metrics", category="fairness", title="Group metrics", status="warn",
                    summary=f"Group {payload or 'b'} is small.",
                    metrics=[Metric(name="selection_rate", value=0.5, n=40, group=payload or "a", method="fairlearn"),
                             Metric(name="selection_rate", value=0.7, n=30, group="b", method="fairlearn")]),
        CheckResult(id="explanations", category="explanations", title="Explanations", status="error",
                    summary="The check crashed.", error=f"ValueError: bad input {payload or 'shape'}"),
    ]
    provenance = Provenance(
        report_id=report_id, tool_version="0.1.0", started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:01:00Z",
        seed=0, device="cpu", hardware={"cpu": "test"}, python="3.11", platform="Linux", libraries={"torch": "2"},
        files=[FileRecord(role="model", path=model_path + (payload and f"/{payload}"), sha256="ab" * 32,
                          format="torchscript"),
               FileRecord(role="data.eval", path="data/eval.npz", sha256="cd" * 32, format="npz", n_samples=100)],
        config={}, config_sha256="ef" * 32, model={"kind": "torchscript", "classes": [payload or "cat", "dog"]},
        model_info=ModelInfo(name=f"net {payload}".strip(), name_source="config", owner=payload or None))
    # An extra attestation topic is titled after its key and starts a paragraph of the model card.
    return AuditResult(provenance=provenance, checks=checks, summary=summarise(checks),
                       attestations={payload or "extra_topic": "We state it."})


def _write_results(folder: Path, report_id: str, payload: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    path.write_text(_result(report_id, payload=payload).model_dump_json(indent=2))
    return path


def _previous_set(out: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, bytes]:
    """A complete earlier set in ``out`` (JSON, HTML, PDF, card), printed by the fake browser."""
    printer, _ = fake_chromium(tmp_path, "print")
    monkeypatch.setenv("DEEPAUDIT_CHROMIUM", str(printer))
    write_reports(_result("r-previous"), out, pdf=True, card=True)
    monkeypatch.delenv("DEEPAUDIT_CHROMIUM")
    state = snapshot(out)
    assert sorted(state) == ["model_card.html", "model_card.md", "report.html", "report.pdf", "results.json"]
    return state


def _cli_process(args: list[object], env: dict[str, str]) -> subprocess.Popen:
    """The CLI in a subprocess with Ctrl-C's default meaning (a parent shell may have ignored SIGINT)."""
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


# ---------------------------------------------------------------------------- signals and the PDF


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_chromium_prints_leaves_the_previous_set(sig: int, tmp_path: Path, scratch_tmp: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    previous = _previous_set(out, monkeypatch, tmp_path)
    hang, marker = fake_chromium(tmp_path, "hang")
    results = _write_results(tmp_path / "new", "r-new")
    env = {**os.environ, "DEEPAUDIT_CHROMIUM": str(hang), "TMPDIR": str(scratch_tmp), "OMP_NUM_THREADS": "1"}
    junit = tmp_path / "ci" / "junit.xml"  # outside --out: staged beside its target, in a folder made for it
    proc = _cli_process(["report", results, "--out", out, "--format", "pdf", "--format", "card", "--junit", junit], env)
    _wait_for(marker, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    code, word = (143, "terminated (SIGTERM)") if sig == signal.SIGTERM else (130, "interrupted")
    assert proc.returncode == code, stderr
    assert f"deepaudit: {word}; no partial report set was left behind." in stderr and "Traceback" not in stderr
    _browser_gone(marker)
    assert snapshot(out) == previous, "the previous complete set is intact, nothing stray beside it"
    assert not junit.parent.exists(), "no JUnit file, no temporary, no folder made for it"
    assert list(scratch_tmp.iterdir()) == [], "no browser profile or temporaries left"


def test_concurrent_run_into_one_folder_exits_2_naming_the_first(tmp_path: Path, scratch_tmp: Path,
                                                                 torchscript_file: Path, image_npz: Path,
                                                                 no_work: list[str]) -> None:
    out = tmp_path / "out"
    hang, marker = fake_chromium(tmp_path, "hang")
    results = _write_results(tmp_path / "first", "r-first")
    env = {**os.environ, "DEEPAUDIT_CHROMIUM": str(hang), "TMPDIR": str(scratch_tmp)}
    first = _cli_process(["report", results, "--out", out, "--format", "pdf"], env)
    try:
        _wait_for(marker, first)
        code, _, stderr = invoke(*audit(torchscript_file, image_npz, out))
        assert code == 2 and no_work == []
        one_line_error(stderr, "being written by another deepaudit run", f"pid {first.pid}", "deepaudit report")
        code, _, stderr = invoke("report", _write_results(tmp_path / "second", "r-second"), "--out", out)
        assert code == 2
        one_line_error(stderr, f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143
    _browser_gone(marker)
    assert not out.exists(), "the first run had created the folder; interrupted, it leaves none"


def test_pdf_timeout_kills_the_browser_group(tmp_path: Path, scratch_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reports.pdf import ReportError, render_pdf

    hang, marker = fake_chromium(tmp_path, "hang")
    monkeypatch.setenv("DEEPAUDIT_CHROMIUM", str(hang))
    page = _file(tmp_path / "page" / "report.html", "<p>hi</p>")
    with pytest.raises(ReportError, match="did not print report.html within 1 s"):
        render_pdf(page, tmp_path / "page" / "report.pdf", timeout_s=1)
    _browser_gone(marker)
    assert sorted(p.name for p in page.parent.iterdir()) == ["report.html"]
    assert list(scratch_tmp.iterdir()) == []


def test_failed_print_publishes_the_rest_and_drops_the_old_pdf(tmp_path: Path, scratch_tmp: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    _previous_set(out, monkeypatch, tmp_path)
    failing, _ = fake_chromium(tmp_path, "fail")
    monkeypatch.setenv("DEEPAUDIT_CHROMIUM", str(failing))
    code, _, stderr = invoke("report", _write_results(tmp_path / "new", "r-new"), "--out", out, "--format", "pdf")
    assert code == 2
    one_line_error(stderr, "Chromium failed to print", "fake chromium crashed", f"written to {out}",
                   "To do without the PDF, drop pdf from --format.")
    assert "--no-pdf" not in stderr, "report has no --no-pdf"
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.json"], \
        "the new set without its PDF; the old report's PDF and card are gone"
    assert json.loads((out / "results.json").read_text())["provenance"]["report_id"] == "r-new"
    assert "r-new" in (out / "report.html").read_text()
    assert list(scratch_tmp.iterdir()) == []


# ------------------------------------------------------------------------------- the set as a unit


def test_disk_full_midway_leaves_the_previous_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reports import outputs

    out = tmp_path / "out"
    previous = _previous_set(out, monkeypatch, tmp_path)
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(outputs.os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"):
        write_reports(_result("r-new"), out, card=True, markdown=tmp_path / "summary.md")
    monkeypatch.undo()
    assert snapshot(out) == previous
    assert not (tmp_path / "summary.md").exists() and not strays(tmp_path)


def test_sigterm_during_publication_waits_until_the_set_is_whole(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM that lands between two renames of the publication is held back until the last one."""
    out = tmp_path / "out"
    _previous_set(out, monkeypatch, tmp_path)
    real_replace = os.replace

    def replace(src: object, dst: object) -> None:
        real_replace(src, dst)
        if Path(dst) == out / "model_card.md":  # the first rename of the set: send SIGTERM to ourselves
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(os, "replace", replace)
    # A second thread (torch and OpenMP start some) may be the one the kernel hands the signal to.
    other = threading.Thread(target=time.sleep, args=(5,), daemon=True)
    other.start()
    code, _, stderr = invoke("report", _write_results(tmp_path / "new", "r-new"), "--out", out, "--format", "card")
    monkeypatch.undo()
    assert code == 143 and "terminated (SIGTERM)" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["model_card.html", "model_card.md", "results.json"]
    assert all("r-new" in p.read_text() and "r-previous" not in p.read_text() for p in out.iterdir()), \
        "one complete set, the new one: no file of the previous audit beside it"


def test_same_report_keeps_its_other_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    previous = _previous_set(out, monkeypatch, tmp_path)
    code, _, stderr = invoke("report", out / "results.json", "--format", "md")
    assert code == 0, stderr
    now = snapshot(out)
    assert sorted(now) == sorted([*previous, "summary.md"])
    assert now["report.pdf"] == previous["report.pdf"] and now["model_card.md"] == previous["model_card.md"]


def test_report_defaults_to_the_folder_of_its_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    other = _write_results(tmp_path / "deepaudit-out", "r-other")
    before = other.read_bytes()
    results = _write_results(tmp_path / "audits" / "a", "r-a")
    code, stdout, stderr = invoke("report", results)
    assert code == 0, stderr
    assert other.read_bytes() == before, "another audit's results.json in ./deepaudit-out is untouched"
    assert sorted(p.name for p in results.parent.iterdir()) == ["report.html", "results.json"]
    assert "r-a" in (results.parent / "report.html").read_text()
    assert f"html: {results.parent / 'report.html'}" in stdout


def test_report_into_another_audits_folder_replaces_the_whole_set(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    _previous_set(out, monkeypatch, tmp_path)
    code, _, stderr = invoke("report", _write_results(tmp_path / "b", "r-b"), "--out", out)
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.json"]
    assert "r-b" in (out / "report.html").read_text() and "r-previous" not in (out / "report.html").read_text()


def test_every_file_of_a_set_names_its_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    printer, _ = fake_chromium(tmp_path, "print")
    monkeypatch.setenv("DEEPAUDIT_CHROMIUM", str(printer))
    written = write_reports(_result("r-7f3a9c"), out, pdf=True, card=True, junit=out / "junit.xml",
                            markdown=out / "summary.md")
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "model_card.html", "model_card.md", "report.html",
                                                    "report.pdf", "results.json", "summary.md"]
    for key, path in written.items():
        if key != "pdf":  # the PDF is the printed report.html
            assert "r-7f3a9c" in path.read_text(), f"{path.name} does not name its report"


# ------------------------------------------------------------------------------ injection strings

PAYLOADS = {
    "https URL": "https://evil.example/phish?next=1",
    "http URL in text": "see http://evil.example now",
    "www name": "www.evil.example",
    "angle autolink": "<https://evil.example>",
    "e-mail": "mail attacker@evil.example",
    "markdown link": "[click here](https://evil.example)",
    "markdown image": "![x](https://evil.example/p.png)",
    "html tag": "<img src=x onerror=alert(1)>",
    "script": "</td><script>alert(1)</script>",
    "pipes": "a | b | c",
    "bullet at a line start": "- item",
    "ordered item at a line start": "1. item",
    "quote at a line start": "> quoted",
    "heading and list": "\n# Owned\n- item\n1. first\n===",
    "control characters": "NUL\x00 ESC\x1b[31mred\x1b[0m BEL\x07 BS\x08 DEL\x7f C1\x9b",
    "bidi override": "cat\u202etxt.exe\u202c",
    "backticks": "``` `code` ``",
}
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class _Structure(html.parser.HTMLParser):
    """Tag names of a rendered page, code spans left out (they hold neutralised URLs), and so are the
    renderer's own line-break opportunities (``<wbr>`` after ``_ / | = ,`` in table cells, which follow the text)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in ("code", "wbr"):
            self.tags.append(tag)


def _structure(page: str) -> list[str]:
    parser = _Structure()
    parser.feed(page)
    return parser.tags


def _gfm(markdown: str) -> str:
    """Rendered by GitHub's own cmark-gfm (with its autolink extension); a dev dependency, so never skipped."""
    import cmarkgfm
    from cmarkgfm.cmark import Options

    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


def _split_front_matter(card: str) -> tuple[dict, str]:
    import yaml

    assert card.startswith("---\n")
    head, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.mark.parametrize("case", list(PAYLOADS))
def test_injection_strings_cannot_change_markdown_or_card(case: str) -> None:
    from reports import render_card_html, render_card_markdown, render_html, render_markdown

    payload = PAYLOADS[case]
    hostile, plain = _result("r-x", payload=payload), _result("r-x", payload="plain")
    meta, card_body = _split_front_matter(render_card_markdown(hostile))
    assert not CONTROL.search(json.dumps(meta, ensure_ascii=False)) and "evil" not in json.dumps(meta).replace(
        meta["model-index"][0]["name"], ""), "the front matter holds the payload only as the model name"
    plain_body = _split_front_matter(render_card_markdown(plain))[1]
    for name, text, baseline in (("summary", render_markdown(hostile), render_markdown(plain)),
                                 ("card", card_body, plain_body)):
        assert not CONTROL.search(text), f"{name}: control characters copied raw"
        page = _gfm(text)
        assert "<a " not in page and "<img" not in page and "<script" not in page, (name, page)
        assert _structure(page) == _structure(_gfm(baseline)), f"{name}: the payload changed the layout"
    for render in (render_html, render_card_html):
        page = render(hostile)
        assert "<img src=x" not in page and "<script>alert" not in page, render.__name__
        assert _structure(page) == _structure(render(plain)), f"{render.__name__}: the payload changed the page"
    assert not CONTROL.search(render_card_html(hostile).replace("\t", "").replace("\n", ""))


def test_injection_through_the_cli_report_command(tmp_path: Path) -> None:
    results = _write_results(tmp_path / "a", "r-x", payload="https://evil.example \x1b[2J\x00 | <b>x</b>")
    code, _, stderr = invoke("report", results, "--format", "md", "--format", "card")
    assert code == 0, stderr
    for name in ("summary.md", "model_card.md"):
        text = (tmp_path / "a" / name).read_text()
        assert "\x1b" not in text and "\x00" not in text
        if name == "model_card.md":  # YAML metadata, not Markdown: the model's name stays as it is, minus controls
            meta, text = _split_front_matter(text)
            assert meta["model-index"][0]["name"].endswith("https://evil.example [2J | <b>x</b>")
        assert "`https://evil.example`" in text and "\\<b\\>" in text
        assert "<a " not in _gfm(text)
