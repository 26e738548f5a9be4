"""deepaudit compare: the same audit over several models, lined up metric by metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import TINY_CNN_CLASS
from typer.testing import CliRunner

import cli
from audit.compare import run_compare
from audit.config import load_config
from audit.errors import InputError
from reports.compare import TIMING_MARGIN, comparison_rows

FAST = ["checks.performance.n_resamples=20", "checks.ood.n_synthetic=20", "energy.track=false",
        "checks.corruption={max_samples: 20, severities: [1, 5]}",
        "checks.efficiency={min_seconds: 0, measure_energy: false}", "checks.adversarial={max_samples: 16, black_box: never}",
        "checks.explanations={max_samples: 3, n_steps: 4, n_shap_samples: 4, n_perturb: 2}",
        # An untrained tiny CNN on random labels cannot beat the majority baseline, so the built-in condition
        # (informative_p_value <= 0.01) would fail it and baseline_lift >= 0.1 warn; these tests are about lining
        # results up, not model quality.
        "checks.performance.thresholds={informative_p_value: {max: 1}, baseline_lift: {min: -1000}}"]


def cfg(model: Path, data: Path):
    return load_config(None, {"model.path": str(model), "model.class": TINY_CNN_CLASS, "data.eval.path": str(data),
                              "device": "cpu"}, FAST)


def test_same_weights_in_another_format_compare_equal(safetensors_file: Path, torchscript_file: Path,
                                                      image_npz: Path) -> None:
    comparison = run_compare(cfg(safetensors_file, image_npz), models=[torchscript_file])
    assert [e.kind for e in comparison.entries] == ["base", "model"]
    rows = {(r.check, r.metric): r for r in comparison_rows(comparison)}
    acc = rows[("performance", "accuracy")]
    assert acc.values[0] == acc.values[1] and acc.deltas[1] == 0 and acc.verdicts[1] == "same"
    assert rows[("corruption", "mce")].verdicts[1] == "same"


def test_direction_of_deltas(safetensors_file: Path, image_npz: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from tiny_models import TinyCNN

    torch.manual_seed(123)
    other = tmp_path / "other.safetensors"
    save_file(TinyCNN().state_dict(), str(other))
    comparison = run_compare(cfg(safetensors_file, image_npz), models=[other])
    for r in comparison_rows(comparison):
        if r.deltas[1] not in (None, 0) and r.higher_is_better is not None:
            if r.notes[1] is not None:  # obtained another way (e.g. the best OOD score differs): no direction
                assert r.verdicts[1] == "not comparable"
            elif r.verdicts[1] == "same":  # a timing or cost within 5% of the base: this machine's noise
                assert r.unit is not None and abs(r.deltas[1] / r.values[0]) <= TIMING_MARGIN
            else:
                assert r.verdicts[1] == ("better" if (r.deltas[1] > 0) == r.higher_is_better else "worse")


def test_nothing_to_compare(safetensors_file: Path, image_npz: Path) -> None:
    with pytest.raises(InputError, match="pass --variant SPEC"):
        run_compare(cfg(safetensors_file, image_npz))


def test_cli_writes_side_by_side_report(safetensors_file: Path, torchscript_file: Path, image_npz: Path,
                                        tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = ["compare", "-m", str(safetensors_file), "-d", str(image_npz), "--with", str(torchscript_file),
            "--device", "cpu", "--out", str(out), "--set", f"model.class={TINY_CNN_CLASS}", "--set", "energy.track=true"]
    for item in FAST:
        args += ["--set", item]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.stderr
    # The terminal table: whole names (never "performance.accura…"), one column per model, no per-check energy rows.
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("check "))
    assert lines[header].split() == ["check", "metric", "base", "model.ts"]
    assert any(line.startswith("performance ") and " accuracy " in line and "(=)" in line for line in lines[header:])
    assert "poisoning.backdoor_scan" not in result.stdout or "poisoning.backdoor_scan " in result.stdout
    assert "energy_kwh" not in result.stdout and "…" not in result.stdout
    data = json.loads((out / "compare.json").read_text())
    assert [e["label"] for e in data["entries"]] == ["base", "model.ts"]
    html = (out / "compare.html").read_text()
    assert "model.ts" in html and "accuracy" in html and "http" not in html.split("</head>")[1]
    assert (out / "base" / "report.html").is_file() and (out / "model.ts" / "results.json").is_file()


def test_pgd_at_variant_beside_the_base(safetensors_file: Path, image_npz: Path, tmp_path: Path) -> None:
    """A hardened variant, adversarially fine-tuned on data.reference, is audited beside the original."""
    import numpy as np

    rng = np.random.default_rng(1)
    ref = tmp_path / "train.npz"
    np.savez(ref, x=rng.random((48, 1, 8, 8), dtype=np.float32), y=rng.integers(0, 3, 48))
    config = load_config(None, {"model.path": str(safetensors_file), "model.class": TINY_CNN_CLASS,
                                "data.eval.path": str(image_npz), "data.reference.path": str(ref), "device": "cpu"},
                         FAST + ["model.preprocessing.input_range=[0, 1]", "checks.adversarial.eps=[0.05]",
                                 "checks.privacy.enabled=false", "checks.privacy.extraction.enabled=false",
                                 "checks.drift.enabled=false", "checks.ood.enabled=false",
                                 "checks.explanations.enabled=false", "checks.efficiency.enabled=false",
                                 "checks.corruption.enabled=false"])
    comparison = run_compare(config, variants=["pgd_at:eps=0.05,steps=2,epochs=1"])
    base, hardened = comparison.entries
    assert (hardened.kind, hardened.label) == ("variant", "pgd_at:eps=0.05,steps=2,epochs=1")
    at = hardened.metadata["adversarial_training"]
    assert at["n_samples"] == 48 and at["eps"] == 0.05 and at["clip"] == [0.0, 1.0] and at["seed"] == config.seed
    rows = {(r.check, r.metric): r for r in comparison_rows(comparison)}
    assert rows[("adversarial", "robust_accuracy")].values[1] is not None
    assert hardened.result.check("adversarial").status != "error"
    assert hardened.result.provenance.model["variant"]["variant"] == "pgd_at"


def test_pgd_at_without_training_data_is_an_input_error(safetensors_file: Path, image_npz: Path) -> None:
    with pytest.raises(InputError, match=r"^variant 'pgd_at' is trained on the training data: give it as data.reference"):
        run_compare(cfg(safetensors_file, image_npz), variants=["pgd_at"])


def test_cli_pgd_at_without_training_data_exits_2_with_one_line(safetensors_file: Path, image_npz: Path,
                                                                  tmp_path: Path) -> None:
    args = ["compare", "-m", str(safetensors_file), "-d", str(image_npz), "--variant", "pgd_at:steps=2.5",
            "--device", "cpu", "--out", str(tmp_path / "cmp"), "-q", "--set", f"model.class={TINY_CNN_CLASS}"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2
    assert "The 'steps' parameter of variant 'pgd_at' must be a positive integer. Got 2.5 instead." in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _entry(label: str, metrics: dict[tuple[str, str], tuple[float, bool | None]]):
    from audit.results import AuditResult, CheckResult, CompareEntry, Metric, Provenance, summarise

    checks = {}
    for (check, name), (value, hib) in metrics.items():
        checks.setdefault(check, []).append(Metric(name=name, value=value, n=100, method="test", higher_is_better=hib))
    results = [CheckResult(id=c, category=c, title=c, status="pass", summary="", metrics=ms, duration_s=0.0)
               for c, ms in checks.items()]
    prov = Provenance(report_id="r", tool_version="0", started_at="t", finished_at="t", seed=0, device="cpu",
                      hardware={}, python="3", platform="p", libraries={}, files=[], config={}, config_sha256="0",
                      model={})
    return CompareEntry(label=label, kind="base" if label == "base" else "variant", spec=label,
                        result=AuditResult(provenance=prov, checks=results, summary=summarise(results)))


def test_tradeoffs_never_imply_a_saving_that_was_not_measured() -> None:
    from audit.results import ComparisonResult
    from reports.compare import render_compare_html, tradeoffs

    base = _entry("base", {("efficiency", "model_size_mb"): (4.0, False), ("efficiency", "latency_p50_ms"): (2.0, False),
                           ("performance", "accuracy"): (0.95, True)})
    int8 = _entry("int8", {("efficiency", "model_size_mb"): (1.0, False), ("efficiency", "latency_p50_ms"): (3.0, False),
                           ("performance", "accuracy"): (0.93, True)})
    comparison = ComparisonResult(entries=[base, int8])
    (t,) = tradeoffs(comparison)
    assert t["savings"] == ["size on disk 0.25× the base (75% less)"]
    assert t["costs"] == ["median latency 1.50× the base: no saving on cpu", "accuracy 0.950 → 0.930 (worse)"]
    assert "no saving on cpu" in render_compare_html(comparison)
    noise = _entry("noise", {("efficiency", "model_size_mb"): (4.0, False), ("efficiency", "latency_p50_ms"): (1.96, False),
                             ("performance", "accuracy"): (0.951, True)})
    (t,) = tradeoffs(ComparisonResult(entries=[base, noise]))
    assert t["savings"] == [] and "within 5%, no clear saving" in t["costs"][1] and len(t["costs"]) == 2


def test_every_model_is_probed_before_any_check_runs(safetensors_file: Path, image_npz: Path, tmp_path: Path) -> None:
    """A compared model with NaN logits is bad input found before the base model is audited."""
    import torch
    from torch import nn

    class NaNModel(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 3), float("nan"))

    other = tmp_path / "nan.pt"
    torch.jit.save(torch.jit.script(NaNModel()), str(other))
    audited: list[str] = []
    with pytest.raises(InputError, match=r"60 of 60 rows of data\.eval give non-finite"):
        run_compare(cfg(safetensors_file, image_npz), models=[other], on_model=lambda e: audited.append(e.label))
    assert audited == []


def test_a_non_deterministic_compared_model_is_flagged_in_the_comparison(safetensors_file: Path, image_npz: Path,
                                                                         tmp_path: Path) -> None:
    import torch
    from torch import nn

    from reports.compare import render_compare_html

    class Noisy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.randn(x.shape[0], 3)

    other = tmp_path / "noisy.pt"
    torch.jit.save(torch.jit.script(Noisy()), str(other))
    from audit.registry import list_checks

    only_perf = [f"checks.{c}.enabled=false" for c in list_checks() if c != "performance"]
    config = load_config(None, {"model.path": str(safetensors_file), "model.class": TINY_CNN_CLASS,
                                "data.eval.path": str(image_npz), "device": "cpu"}, [*FAST, *only_perf])
    comparison = run_compare(config, models=[other])
    base, noisy = comparison.entries
    assert base.result.probe.deterministic and not base.result.probe.findings
    assert not noisy.result.probe.deterministic and noisy.result.probe.disagreement_rate > 0.3
    html = render_compare_html(comparison)
    assert "<strong>Model probe:</strong> The model is not deterministic" in html


def test_better_is_never_inferred_from_a_method_that_did_not_run() -> None:
    """A variant whose gradient methods cannot run is sanity-checked on other methods: 1 → 0 failing
    methods is not 'better', it is another question; the table and the trade-offs say so."""
    from audit.results import ComparisonResult
    from reports.compare import render_compare_html, render_compare_table

    base = _entry("base", {("explanations", "methods_failing_sanity"): (1.0, False), ("performance", "accuracy"): (0.9, True)})
    variant = _entry("int8_dynamic", {("explanations", "methods_failing_sanity"): (0.0, False),
                                      ("performance", "accuracy"): (0.8, True)})
    from audit.results import Metric

    def ran(result, method_name: str, text: str):  # noqa: ANN001, ANN202 - the explanation methods that ran
        check = result.checks[0]
        extra = Metric(name="deletion_auc", group=method_name, value=0.3, n=100, method="test", higher_is_better=False)
        m = check.metrics[0].model_copy(update={"method": text})
        result.checks[0] = check.model_copy(update={"metrics": [m, extra]})

    ran(base.result, "integrated_gradients", "of the 4 checked (ig, saliency)")
    ran(variant.result, "lime", "of the 2 checked (lime, kernel_shap)")
    comparison = ComparisonResult(entries=[base, variant])
    rows = {(r.check, r.metric): r for r in comparison_rows(comparison)}
    sanity = rows[("explanations", "methods_failing_sanity")]
    assert sanity.verdicts[1] == "not comparable" and "method changed" in sanity.notes[1]
    assert rows[("performance", "accuracy")].verdicts[1] == "worse"
    table = render_compare_table(comparison)
    assert "0 (-1 not comparable)" in table and "better" not in table and "not comparable with the base" in table
    assert "not comparable: method changed" in render_compare_html(comparison)


def test_int8_variant_flops_are_not_zero(safetensors_file: Path, image_npz: Path) -> None:
    """torch's FLOP counter does not see dynamic int8 kernels; the int8 variant reports the float
    model's count, which its int8 kernels run, and says so — not 0 or a partial count read as a saving."""
    from audit.registry import list_checks

    only = [f"checks.{c}.enabled=false" for c in list_checks() if c not in ("efficiency",)]
    config = load_config(None, {"model.path": str(safetensors_file), "model.class": TINY_CNN_CLASS,
                                "data.eval.path": str(image_npz), "device": "cpu"}, [*FAST, *only])
    comparison = run_compare(config, variants=["int8_dynamic", "pruned:0.5"])
    flops = [e.result.check("efficiency").metric("flops_per_sample") for e in comparison.entries]
    assert flops[0].value == flops[1].value == flops[2].value == 4912.0  # TinyCNN: conv 4,608 + linears 304
    assert "on the float model" in flops[1].method and "counted 4,608" in flops[1].method
    assert "on the float model" not in flops[2].method
    meta = comparison.entries[1].metadata
    assert "int8 activations" in meta["dtype"] and "float32 activations" not in meta["dtype"]
    assert "int8 activations" in meta["method"]
    # The variant's metadata holds a dict ("params": {}): the side-by-side page renders it (it crashed once,
    # when the template's finalize function was cached by argument).
    from reports.compare import render_compare_html
    from reports.html import environment

    assert "params" in meta and "int8 activations" in render_compare_html(comparison)
    assert environment() is environment()  # one Jinja environment, built once
