"""Config validation: every error names the key and the file; flags override the file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from audit.config import AuditConfig, load_config, starter_config
from audit.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deepaudit.yaml"
    path.write_text(text)
    return path


BASE = "model: {path: m.pt}\ndata: {eval: {path: d.npz}}\n"


def test_minimal_config_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.model.path == tmp_path / "m.pt"  # relative to the config file
    assert cfg.data.eval.path == tmp_path / "d.npz"
    assert cfg.device == "auto" and cfg.seed == 0 and cfg.data.eval.target == "y"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "sed: 3\n", r"unknown key 'sed'\. Did you mean 'seed'\?"),
        ("modle: {path: m.pt}\ndata: {eval: {path: d.npz}}\n", r"unknown key 'modle'\. Did you mean 'model'\?"),
        (BASE.replace("path: d.npz", "path: d.npz, targte: y"), r"unknown key 'data\.eval\.targte'\. Did you mean 'target'\?"),
        (BASE + "seed: many\n", r"key 'seed': .*integer.*got \"many\""),
        (BASE + "batch_size: 0\n", r"key 'batch_size': .*greater than 0"),
        (BASE + "device: gpu\n", r"key 'device': must be auto, cpu, cuda, cuda:N or mps"),
        ("data: {eval: {path: d.npz}}\n", r"missing required key 'model'\. Pass --model PATH"),
        ("model: {path: m.pt}\n", r"missing required key 'data'\. Pass --data PATH"),
        (BASE + "checks: {perfomance: {}}\n", r"unknown check 'checks\.perfomance'\. Did you mean 'performance'\?"),
        (BASE + "checks: {performance: {n_bins: 1}}\n", r"key 'checks\.performance\.n_bins': .*greater than or equal to 2"),
        (BASE + "checks: {performance: {n_bootstrap: 5}}\n", r"unknown key 'checks\.performance\.n_bootstrap'"),
        (BASE + "checks: {performance: {thresholds: {acuracy: {min: 0.9}}}}\n",
         r"performance has no metric 'acuracy'\. Did you mean 'accuracy'\?"),
        (BASE + "checks: {performance: {thresholds: {accuracy: {}}}}\n", r"give 'min', 'max' or both"),
        (BASE + "checks: {performance: {thresholds: {accuracy: {min: 0.9, level: fatal}}}}\n",
         r"key 'checks\.performance\.thresholds\.accuracy\.level'"),
        (BASE.replace("m.pt}", "m.pt, preprocessing: {std: [0.5, 0]}}"), r"key 'model\.preprocessing\.std\.1': .*greater than 0"),
        (BASE.replace("m.pt}", "m.pt, preprocessing: {input_range: [1, 0]}}"),
         r"key 'model\.preprocessing\.input_range': the low end must be below the high end"),
        (BASE.replace("path: d.npz", "path: d.npz, image_size: [0, 32]"), r"key 'data\.eval\.image_size\.0': .*greater than 0"),
        (BASE + "seed: .nan\n", r"key 'seed'"),
        ("model: [1, 2\n", r"is not valid YAML"),
        ("- a\n- b\n", r"must be a mapping"),
    ],
)
def test_errors_name_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    text_out = str(info.value)
    assert text_out.startswith(str(path)), "the message names the file"
    assert "\n" not in text_out, "one line"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist\. Create one with 'deepaudit init"):
        load_config(tmp_path / "nope.yaml")


def test_flags_and_sets_override_file(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "seed: 1\n")
    cfg = load_config(path, {"seed": 7, "device": None, "model.path": "other.pt"},
                      ["checks.performance.thresholds.accuracy.min=0.95", "batch_size=32"])
    assert cfg.seed == 7 and cfg.batch_size == 32 and cfg.device == "auto"
    assert cfg.model.path == Path("other.pt")  # flag paths are relative to the working directory
    assert cfg.checks["performance"]["thresholds"]["accuracy"]["min"] == 0.95


def test_sets_address_check_ids_with_dots(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    cfg = load_config(path, None, ["checks.fairness.group_metrics.thresholds.demographic_parity_difference.max=0.05",
                                   "checks.fairness.counterfactual_text.min_texts=3"])
    assert cfg.checks["fairness.group_metrics"]["thresholds"]["demographic_parity_difference"]["max"] == 0.05
    assert cfg.checks["fairness.counterfactual_text"]["min_texts"] == 3
    with pytest.raises(ConfigError, match="unknown check 'checks.fairness'"):
        load_config(path, None, ["checks.fairness.nope.x=1"])


@pytest.mark.parametrize(
    ("file_extra", "sets", "blamed", "key"),
    [
        ("", ["batch_size=true"], "--set batch_size=true", "batch_size"),  # the file has no batch_size
        ("batch_size: true\n", ["seed=3"], "{path}", "batch_size"),  # the file's value, a good --set beside it
        ("batch_size: 8\n", ["batch_size=true"], "--set batch_size=true", "batch_size"),  # --set replaced the file's
        ("", ["checks.performance={n_bins: 1}"], "--set checks.performance={n_bins: 1}", "checks.performance.n_bins"),
        ("checks: {performance: {n_bins: 1}}\n", ["checks.performance.n_resamples=50"], "{path}",
         "checks.performance.n_bins"),
        ("", ["checks.performance.thresholds.acuracy.min=0.9"], "--set checks.performance.thresholds.acuracy.min=0.9",
         "checks.performance.thresholds.acuracy"),
        ("", ["checks.perfomance.n_bins=3"], "--set checks.perfomance.n_bins=3", "checks.perfomance"),
    ],
)
def test_errors_name_the_set_item_or_the_file_that_gave_the_value(tmp_path: Path, file_extra: str, sets: list[str],
                                                                  blamed: str, key: str) -> None:
    """A bad value from --set names that item, not the file (which may not hold the key); the file's own, the file."""
    path = write(tmp_path, BASE + file_extra)
    with pytest.raises(ConfigError) as info:
        load_config(path, None, sets)
    assert str(info.value).startswith(blamed.replace("{path}", str(path)) + ": ") and f"'{key}'" in str(info.value), str(info.value)


def test_flags_alone_without_file() -> None:
    cfg = load_config(None, {"model.path": "m.pt", "data.eval.path": "d.npz", "data.eval.sensitive_features": ["sex"]})
    assert cfg.data.eval.sensitive_features == ["sex"]
    with pytest.raises(ConfigError, match=r"^command line: missing required key 'data'"):
        load_config(None, {"model.path": "m.pt"})
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, {"model.path": "m.pt", "data.eval.path": "d"}, ["seed"])


def test_starter_config_is_valid_and_documents_keys() -> None:
    data = yaml.safe_load(starter_config())
    cfg = AuditConfig.model_validate(data)
    assert cfg.checks["performance"]["thresholds"]["accuracy"]["min"] == 0.9


def test_config_reference_documents_every_key() -> None:
    """docs/config.md lists every key of every config model, so the docs stay in step."""
    from audit.config import CheckConfig, DataSpec, ModelSpec, OutputSpec, Preprocessing, ThresholdSpec
    from audit.registry import get_check, list_checks

    doc = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    models = [AuditConfig, ModelSpec, DataSpec, OutputSpec, Preprocessing, ThresholdSpec, CheckConfig]
    models += [get_check(c).Config for c in list_checks()]
    missing = []
    for model in models:
        for name, field in model.model_fields.items():
            key = field.alias or name
            if not re.search(rf"`{re.escape(key)}`", doc):
                missing.append(f"{model.__name__}.{key}")
    assert not missing, f"undocumented config keys: {missing}"


def test_config_reference_is_generated_from_the_models() -> None:
    from audit.config import config_reference_markdown

    doc = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    assert doc == config_reference_markdown(), "docs/config.md is stale: regenerate it (command at its top)"


def test_starter_configs_commented_check_examples_are_valid() -> None:
    """The commented examples under `checks:` in `deepaudit init`'s file validate once uncommented."""
    from audit.config import validate_config

    text = "\n".join(re.sub(r"^  # (fairness|adversarial|efficiency|  thresholds|  eps)", r"  \1", line)
                     for line in starter_config().splitlines())
    data = yaml.safe_load(text)
    assert {"fairness.group_metrics", "adversarial", "efficiency"} <= set(data["checks"])
    validate_config(data, "starter")


# ------------------------------------------------------------------ check values validated at load time

#: (check id, section as YAML, the key the one-line error must name, what else it must say)
BAD_CHECK_VALUES = [
    ("adversarial", "{eps: [-0.5]}", "checks.adversarial.eps.0", "greater than 0"),
    ("adversarial", "{eps: [0]}", "checks.adversarial.eps.0", "greater than 0"),
    ("adversarial", "{eps: [.nan]}", "checks.adversarial.eps.0", "finite number"),
    ("adversarial", "{eps: [.inf]}", "checks.adversarial.eps.0", "finite number"),
    ("adversarial", "{eps: []}", "checks.adversarial", "eps .* both empty"),
    ("adversarial", "{eps_l2: [-1.0]}", "checks.adversarial.eps_l2.0", "greater than 0"),
    ("adversarial", "{eps: [true]}", "checks.adversarial.eps", "a number, not a boolean"),
    ("adversarial", "{headline_eps: true, eps: [1]}", "checks.adversarial.headline_eps", "not a boolean"),
    ("efficiency", "{min_seconds: false}", "checks.efficiency.min_seconds", "not a boolean"),
    ("explanations", "{n_explain: true}", "checks.explanations.n_explain", "not a boolean"),
    ("adversarial", "{eps: [], eps_l2: [.nan]}", "checks.adversarial.eps_l2.0", "finite number"),
    ("adversarial", "{headline_eps: 0.05}", "checks.adversarial", "headline_eps 0.05 is not one of eps"),
    ("adversarial", "{headline_eps: -0.1}", "checks.adversarial.headline_eps", "greater than 0"),
    ("adversarial", "{near_zero: 1.5}", "checks.adversarial.near_zero", "less than or equal to 1"),
    ("adversarial", "{masking_margin: .nan}", "checks.adversarial.masking_margin", "finite number"),
    ("adversarial", "{black_box_attack: sqare}", "checks.adversarial.black_box_attack", "Did you mean 'square'"),
    ("corruption", "{corruptions: [gausian_noise]}", "checks.corruption.corruptions",
     "unknown corruption 'gausian_noise'. Did you mean 'gaussian_noise'"),
    ("corruption", "{corruptions: []}", "checks.corruption.corruptions", "at least one corruption"),
    ("corruption", "{severities: [0, 3]}", "checks.corruption.severities.0", "greater than or equal to 1"),
    ("corruption", "{severities: [6]}", "checks.corruption.severities.0", "less than or equal to 5"),
    ("corruption", "{severities: []}", "checks.corruption.severities", "at least 1 item"),
    ("ood", "{scores: [energie]}", "checks.ood.scores.0", "Did you mean 'energy'"),
    ("ood", "{scores: []}", "checks.ood.scores", "at least 1 item"),
    ("ood", "{temperature: .inf}", "checks.ood.temperature", "finite number"),
    ("explanations", "{methods: [integrated_gradient]}", "checks.explanations.methods.0",
     "Did you mean 'integrated_gradients'"),
    ("explanations", "{methods: []}", "checks.explanations.methods", "at least 1 item"),
    ("explanations", "{errors_fraction: 0.8, uncertain_fraction: 0.5}", "checks.explanations", "at most 1"),
    ("fairness.group_metrics", "{mitigation: [reweighting]}", "checks.fairness.group_metrics.mitigation.0",
     "Did you mean 'reweighing'"),
    ("fairness.group_metrics", "{positive_class: -1}", "checks.fairness.group_metrics.positive_class", ""),
    ("fairness.group_metrics", "{ci_level: 1.0}", "checks.fairness.group_metrics.ci_level", "less than 1"),
    ("fairness.counterfactual_text", "{axes: []}", "checks.fairness.counterfactual_text.axes", "at least 1 item"),
    ("poisoning.backdoor_simulation", "{rates: [1.5]}", "checks.poisoning.backdoor_simulation.rates.0", "less than 1"),
    ("poisoning.backdoor_simulation", "{rates: [0]}", "checks.poisoning.backdoor_simulation.rates.0", "greater than 0"),
    ("poisoning.backdoor_simulation", "{trigger_features: [-2]}",
     "checks.poisoning.backdoor_simulation.trigger_features.0", "greater than or equal to 0"),
    ("poisoning.backdoor_scan", "{expected_poison_rate: .nan}", "checks.poisoning.backdoor_scan.expected_poison_rate",
     "finite number"),
    ("privacy", "{black_box_model: forest}", "checks.privacy.black_box_model", ""),
    ("privacy.extraction", "{budgets: [0]}", "checks.privacy.extraction.budgets", "positive query counts"),
    ("efficiency", "{min_seconds: .inf}", "checks.efficiency.min_seconds", "finite number"),
    ("performance", "{thresholds: {accuracy: {min: 0.9, max: 0.5}}}", "checks.performance.thresholds.accuracy",
     "min 0.9 is above max 0.5"),
    ("performance", "{thresholds: {accuracy: {min: .nan}}}", "checks.performance.thresholds.accuracy.min",
     "finite number"),
]


@pytest.mark.parametrize(("check_id", "section", "key", "says"), BAD_CHECK_VALUES,
                         ids=[f"{c}:{s}" for c, s, _, _ in BAD_CHECK_VALUES])
def test_bad_check_values_name_the_key(tmp_path: Path, check_id: str, section: str, key: str, says: str) -> None:
    path = write(tmp_path, BASE + f"checks: {{{check_id}: {section}}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert f"key '{key}'" in text, text
    assert re.search(says, text), text
    assert "\n" not in text


def _numeric_fields() -> list[tuple[str, str, bool]]:
    """(check id, key, is float) of every numeric key of every check's config."""
    from audit.registry import get_check, list_checks

    out = []
    for check_id in list_checks():
        for name, field in get_check(check_id).Config.model_fields.items():
            text = str(field.annotation)
            if name != "thresholds" and ("int" in text or "float" in text) and "str]" not in text.replace("| str", ""):
                out.append((check_id, field.alias or name, "float" in text))
    return out


@pytest.mark.parametrize(("check_id", "key", "is_float"), _numeric_fields(), ids=lambda v: str(v))
def test_every_numeric_check_key_has_a_range(check_id: str, key: str, is_float: bool) -> None:
    """-1 is out of range for every numeric key (counts, rates, steps, budgets), none takes a boolean, and a float
    key refuses NaN."""
    from audit.config import validate_config
    from audit.registry import get_check

    field = get_check(check_id).Config.model_fields[key]
    is_list = "list[" in str(field.annotation)
    for bad in ([-1, True] + ([float("nan"), float("inf")] if is_float else [])):
        data = {"model": {"path": "m.pt"}, "data": {"eval": {"path": "d.npz"}},
                "checks": {check_id: {key: [bad] if is_list else bad}}}
        with pytest.raises(ConfigError, match=re.escape(f"key 'checks.{check_id}.{key}")):
            validate_config(data, "test")
