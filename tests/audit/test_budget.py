"""The sample budget (audit.budget): presets, overrides, deprecated key names, what results.json records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from audit.budget import BUDGETS, PRESETS, preset
from audit.config import load_config, validate_check_config
from audit.errors import ConfigError
from audit.registry import get_check, list_checks
from audit.runner import build_checks


def _size(value: object) -> float:
    return max(value) if isinstance(value, list) else float(value)  # type: ignore[arg-type]


def test_presets_name_real_keys_and_standard_is_each_checks_default() -> None:
    for check_id, keys in PRESETS.items():
        assert check_id in list_checks()
        defaults = get_check(check_id).Config()
        for key, values in keys.items():
            assert key in get_check(check_id).Config.model_fields, (check_id, key)
            assert getattr(defaults, key) == values[BUDGETS.index("standard")], (check_id, key)


@pytest.mark.parametrize("budget", BUDGETS)
def test_the_preset_sets_the_documented_numbers(budget: str) -> None:
    for check_id in PRESETS:
        conf = validate_check_config(check_id, {}, budget=budget)
        for key, value in preset(check_id, budget).items():
            assert getattr(conf, key) == value, (budget, check_id, key)
    assert "| `adversarial` | `max_samples` | `64` | `256` | `1024` |" in Path("docs/config.md").read_text()


def test_quick_uses_less_than_standard_less_than_thorough_for_every_expensive_check() -> None:
    cfgs = {b: load_config(None, {"model.path": "m.pt", "data.eval.path": "d.npz", "budget": b}) for b in BUDGETS}
    built = {b: {c.id: c.config for c in build_checks(cfgs[b])} for b in BUDGETS}
    for check_id, keys in PRESETS.items():
        if check_id not in built["standard"]:
            continue  # off by default
        for key in keys:
            q, s, t = (_size(getattr(built[b][check_id], key)) for b in BUDGETS)
            assert q < s < t, (check_id, key, q, s, t)
    assert {"adversarial", "explanations", "corruption", "ood"} <= set(built["standard"])


def test_an_explicit_value_wins_over_the_preset_under_its_name_or_the_old_one() -> None:
    assert validate_check_config("adversarial", {"max_samples": 500}, budget="quick").max_samples == 500
    conf = validate_check_config("adversarial", {"n_samples": 500}, budget="quick")
    assert conf.max_samples == 500 and conf.steps == 5  # the rest of the preset still applies
    assert validate_check_config("ood", {"max_fit_samples": 77}, budget="thorough").max_fit_samples == 77


def test_a_deprecated_key_maps_and_leaves_one_note() -> None:
    conf = validate_check_config("explanations", {"n_explain": 5})
    assert conf.max_samples == 5
    assert conf.deprecation_notes("explanations") == [
        "checks.explanations.n_explain is deprecated: write checks.explanations.max_samples (same meaning; "
        "docs/config.md, Sample budget)."]
    assert validate_check_config("explanations", {"max_samples": 5}).deprecation_notes("explanations") == []
    extraction = validate_check_config("privacy.extraction", {"batch_size": 16, "n_eval": 50})
    assert (extraction.train_batch_size, extraction.max_samples) == (16, 50)
    with pytest.raises(ConfigError, match="'n_samples' is the deprecated name of 'max_samples'"):
        validate_check_config("corruption", {"n_samples": 20, "max_samples": 30})


def test_cli_records_budget_and_effective_counts(tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.app, [
        "audit", "--model", str(torchscript_file), "--data", str(image_npz), "--out", str(out), "--quiet",
        "--device", "cpu", "--budget", "quick", "--checks", "performance,corruption,adversarial",
        "--set", "energy.track=false", "--set", "checks.corruption={n_samples: 20, severities: [1]}",
        "--set", "checks.adversarial.black_box=never",
        "--set", "checks.performance.thresholds={informative_p_value: {max: 1}, baseline_lift: {min: -1000}}"])
    assert result.exit_code in (0, 1), result.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["provenance"]["budget"] == "quick" and data["provenance"]["config"]["budget"] == "quick"
    checks = {c["id"]: c for c in data["checks"]}
    assert checks["adversarial"]["config"]["max_samples"] == 64 and checks["adversarial"]["config"]["steps"] == 5
    assert checks["adversarial"]["sample_budget"] == {"max_samples": 64, "steps": 5, "black_box_queries": 50,
                                                      "hsj_max_samples": 8, "hsj_iterations": 5}
    assert checks["corruption"]["sample_budget"] == {"max_samples": 20, "n_resamples": 100}  # the config's 20 wins
    assert checks["performance"]["sample_budget"] == {"n_resamples": 200, "n_permutations": 500}
    note = "checks.corruption.n_samples is deprecated: write checks.corruption.max_samples"
    assert checks["corruption"]["notes"][0].startswith(note) and note in result.stderr
    assert "n_samples" not in checks["corruption"]["config"]
    html = (out / "report.html").read_text()
    assert "Sample budget (quick): max_samples 20, n_resamples 100" in html
    assert "Budget <b>quick</b>" in html


def test_a_bad_budget_name_exits_2_with_a_suggestion(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["audit", "--model", str(tmp_path / "m.pt"), "--data", str(tmp_path / "d.npz"),
                                          "--budget", "quik", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "key 'budget'" in result.stderr and "Did you mean 'quick'?" in result.stderr
    assert not (tmp_path / "out").exists()
    demo = CliRunner().invoke(cli.app, ["demo", "--budget", "thorogh", "--out", str(tmp_path / "demo")])
    assert demo.exit_code == 2 and "Did you mean 'thorough'?" in demo.stderr and not (tmp_path / "demo").exists()


def test_the_default_batch_follows_the_input_size_and_a_configured_one_wins() -> None:
    from audit.budget import BATCH_ELEMENTS, DEFAULT_BATCH, batch_size_for, default_batch_size

    assert [default_batch_size(s) for s in [None, (12,), (64,), (1, 8, 8), (3, 32, 32), (3, 64, 64)]] == [256] * 6
    assert [default_batch_size(s) for s in [(3, 96, 96), (3, 128, 128), (3, 224, 224), (3, 512, 512)]] == [128, 64, 16, 4]
    assert default_batch_size((3, 4096, 4096)) == 1  # one row over the target is still one row
    for shape in [(3, 224, 224), (3, 100, 77), (1, 28, 28), (5000,)]:
        b = default_batch_size(shape)
        rows = BATCH_ELEMENTS // (shape[0] * (shape[1] if len(shape) > 1 else 1) * (shape[2] if len(shape) > 2 else 1))
        assert b & (b - 1) == 0 and b <= min(DEFAULT_BATCH, rows) < 2 * b or b == DEFAULT_BATCH, (shape, b)
    x = np.zeros((3, 3, 224, 224), np.float32)
    assert batch_size_for(None, x) == 16 and batch_size_for(40, x) == 40
    assert batch_size_for(None, ["a text", "another"]) == DEFAULT_BATCH


def test_an_audit_of_large_images_calls_the_model_on_the_derived_batch_and_records_it(tmp_path: Path) -> None:
    """3×224×224 inputs: the probe and the checks call the model on 16 rows at a time unless batch_size is set;
    results.json states the batch used."""
    import torch
    from tiny_models import TinyCNN

    from audit.runner import run_audit

    model = TinyCNN(in_channels=3, n_classes=3).eval()
    path = tmp_path / "model.ts.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    rng = np.random.default_rng(0)
    data = tmp_path / "x.npz"
    np.savez(data, x=rng.random((40, 3, 224, 224), dtype=np.float32), y=rng.integers(0, 3, 40))
    base = {"model.path": str(path), "data.eval.path": str(data), "output.dir": str(tmp_path / "out")}
    for given, expected in [(None, 16), (24, 24)]:
        sets = ["select=[performance]", "energy.track=false"] + ([f"batch_size={given}"] if given else [])
        result = run_audit(load_config(None, base, sets))
        assert result.provenance.batch_size == expected
        assert f"in batches of {expected}," in result.probe.method
