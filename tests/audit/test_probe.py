"""The model probe before any check: non-finite logits, output width drift, non-determinism."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import cli
from audit.config import load_config
from audit.errors import InputError
from audit.registry import list_checks
from audit.runner import run_audit
from audit.schema import validate_results

N = 60  # rows of the evaluation set; every fifth (rows 0, 5, 10, ...) carries the marker x0 = 5


class NaNWhereMarked(nn.Module):
    """A linear classifier whose logits are NaN on rows with x0 > 2 (all rows when ``everywhere``)."""

    def __init__(self, everywhere: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 3)
        self.everywhere = everywhere

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        mask = x[:, 0] > (-1e9 if self.everywhere else 2.0)
        return torch.where(mask[:, None], torch.full_like(out, float("nan")), out)


class WidthDrift(nn.Module):
    """Three logits, but four for a batch holding a marked row (x1 > 2): a width that changes between batches."""

    def __init__(self, ragged: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 3)
        self.ragged = ragged

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        if bool((x[:, 1] > 2.0).any()):
            return out[:-1] if self.ragged else torch.cat([out, out[:, :1]], dim=1)
        return out


class Dropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.drop(x))


class Counting(nn.Module):
    """Counts the rows it is called on."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 3)
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.lin(x)


def _data(tmp_path: Path, marker_col: int | None = 0, marked_rows: tuple[int, ...] | None = None) -> Path:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(N, 4)).astype(np.float32)
    if marker_col is not None:
        x[list(marked_rows if marked_rows is not None else range(0, N, 5)), marker_col] = 5.0
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=rng.integers(0, 3, N))
    return path


def _script(tmp_path: Path, module: nn.Module, name: str = "m.pt") -> Path:
    path = tmp_path / name
    torch.jit.save(torch.jit.script(module), str(path))
    return path


ONLY_PERFORMANCE = [f"checks.{c}.enabled=false" for c in list_checks() if c != "performance"]
#: The models here are random: the built-in baseline conditions are relaxed, so the probe alone decides a warning.
FAST = ["energy.track=false", "checks.performance.n_resamples=20", *ONLY_PERFORMANCE,
        "checks.performance.thresholds={informative_p_value: {max: 1.0}, baseline_lift: {min: -1.0}}"]


def _cfg(model: Path, data: Path, *sets: str, batch_size: int = 16):  # noqa: ANN202
    return load_config(None, {"model.path": str(model), "data.eval.path": str(data), "device": "cpu",
                              "batch_size": batch_size}, [*FAST, *sets])


def _cli(tmp_path: Path, model: Path, data: Path, *sets: str) -> tuple[int, str, str, Path]:
    out = tmp_path / "out"
    args = ["audit", "--model", str(model), "--data", str(data), "--out", str(out), "--device", "cpu",
            "--batch-size", "16", "--markdown", str(tmp_path / "summary.md"), "--junit", str(tmp_path / "junit.xml"),
            "--quiet"]  # the probe's findings reach stderr even so
    for s in [*FAST, *sets]:
        args += ["--set", s]
    result = CliRunner().invoke(cli.app, args)
    return result.exit_code, result.stdout, result.stderr, out


# ------------------------------------------------------------------------------------ non-finite logits


def test_nan_for_a_fifth_of_the_rows_exits_2_naming_count_and_rows(tmp_path: Path) -> None:
    code, stdout, stderr, out = _cli(tmp_path, _script(tmp_path, NaNWhereMarked()), _data(tmp_path))
    assert code == 2, (stdout, stderr)
    line = stderr.strip()
    assert "\n" not in line and "Traceback" not in stderr
    assert re.search(r"12 of 60 rows of data\.eval give non-finite \(NaN or infinite\) logits "
                     r"\(rows 0, 5, 10, 15, 20, 25, 30, 35, 40, 45, …\)", line), line
    assert "model.allow_nonfinite" in line
    assert not out.exists(), "bad input writes nothing"


def test_nan_for_every_row_exits_2_even_with_allow_nonfinite(tmp_path: Path) -> None:
    model, data = _script(tmp_path, NaNWhereMarked(everywhere=True)), _data(tmp_path, marker_col=None)
    for sets in ((), ("model.allow_nonfinite=true",)):
        with pytest.raises(InputError, match=r"60 of 60 rows of data\.eval give non-finite .*every row"):
            run_audit(_cfg(model, data, *sets))


def test_allow_nonfinite_excludes_the_rows_from_every_check_and_says_so(tmp_path: Path) -> None:
    code, stdout, stderr, out = _cli(tmp_path, _script(tmp_path, NaNWhereMarked()), _data(tmp_path),
                                     "model.allow_nonfinite=true")
    assert code == 0, (stdout, stderr)
    data = json.loads((out / "results.json").read_text())
    validate_results(data)
    probe = data["probe"]
    assert probe["nonfinite_rows"] == 12 and probe["excluded"] is True and probe["n_rows"] == 60
    assert probe["nonfinite_indices"] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    perf = data["checks"][0]
    assert perf["n_samples"] == 48, "the excluded rows are not evaluated"
    acc = next(m for m in perf["metrics"] if m["name"] == "accuracy" and m["group"] is None)
    assert acc["value"] is not None and np.isfinite(acc["value"])
    assert data["summary"]["status"] != "pass", "excluded rows are a warning"
    html = (out / "report.html").read_text()
    page_one = html.split('id="traceability"')[0]
    assert "12 of 60 evaluation rows with non-finite logits" in page_one and "were excluded from every check" in page_one
    assert "12 of 60 evaluation rows" in (tmp_path / "summary.md").read_text()
    assert "deepaudit: WARN model probe: 12 of 60 evaluation rows" in stderr


def test_nonfinite_reference_logits_are_bad_input_when_a_check_computes_them(tmp_path: Path) -> None:
    from audit.context import AuditContext
    from audit.data import AuditDataset
    from models.adapter import TorchAdapter

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(20, 4)).astype(np.float32)
    ref = x.copy()
    ref[[3, 7], 0] = 5.0

    def ds(name: str, inputs: np.ndarray) -> AuditDataset:
        return AuditDataset(name=name, inputs=inputs, target=np.zeros(20, np.int64), class_names=None,
                            sensitive_features=None, feature_names=None, input_kind="tabular", path="mem",
                            format="npz", sha256="0")

    adapter = TorchAdapter(NaNWhereMarked(), input_kind="tabular", device=torch.device("cpu"))
    ctx = AuditContext(adapter, {"eval": ds("eval", x), "reference": ds("reference", ref)}, batch_size=8)
    with pytest.raises(InputError, match=r"2 of 20 rows of data\.reference give non-finite .*\(rows 3, 7\)"):
        ctx.logits("reference")


# ------------------------------------------------------------------------------------ output width


@pytest.mark.parametrize(("ragged", "message"), [
    (False, r"output width changed between batches: 3 outputs per row at first, 4 for rows 48\.\.59"),
    (True, r"returned shape \(11, 3\) for rows 48\.\.59 \(12 inputs\); it must return one row of outputs per input"),
])
def test_output_width_that_changes_between_batches_exits_2(tmp_path: Path, ragged: bool, message: str) -> None:
    code, stdout, stderr, out = _cli(tmp_path, _script(tmp_path, WidthDrift(ragged)),
                                     _data(tmp_path, marker_col=1, marked_rows=(55,)))
    assert code == 2, (stdout, stderr)
    assert re.search(message, stderr), stderr
    assert stderr.strip().count("\n") == 0 and not out.exists()


def test_chunks_of_a_fixed_batch_export_must_agree_on_width() -> None:
    from models.adapter import _same_width
    from models.errors import ModelInputError

    _same_width([np.zeros((4, 3)), np.zeros((2, 3))], 4)
    with pytest.raises(ModelInputError, match=r"3 outputs per row at first, 5 for rows 4\.\.5 of the batch"):
        _same_width([np.zeros((4, 3)), np.zeros((2, 5))], 4)


# ------------------------------------------------------------------------------------ determinism


def test_dropout_model_traced_in_training_mode_is_a_finding_on_page_one(tmp_path: Path) -> None:
    """TorchScript traced with dropout on stays stochastic whatever .eval() does: the probe finds it."""
    module = Dropout().train()
    traced = torch.jit.trace(module, torch.zeros(2, 4), check_trace=False)
    path = tmp_path / "dropout.pt"
    torch.jit.save(traced, str(path))
    code, stdout, stderr, out = _cli(tmp_path, path, _data(tmp_path, marker_col=None))
    assert code == 0, (stdout, stderr)  # a finding, not an exit
    data = json.loads((out / "results.json").read_text())
    validate_results(data)
    probe = data["probe"]
    assert probe["deterministic"] is False and probe["disagreement_rate"] > 0.1 and probe["max_abs_diff"] > 0.1
    assert probe["n_repeat"] == 16
    assert data["summary"]["status"] == "warn" and data["checks"][0]["status"] in ("pass", "warn")
    rate = f"{probe['disagreement_rate']:.1%}"
    html = (out / "report.html").read_text()
    page_one = html.split('id="traceability"')[0]
    assert f"The model is not deterministic: {rate} of 16 predictions changed" in page_one
    assert "every number is suspect" in page_one and "model probe raised a warning" in page_one
    callout = page_one.split('id="probe-warning"')[1].split("</div>")[0]  # the warning box under the verdict
    assert f"{rate} of 16 predictions changed" in callout
    md = (tmp_path / "summary.md").read_text()
    assert f"**Model probe: WARN**\n\n- The model is not deterministic: {rate} of 16 predictions changed" in md
    assert f"deepaudit: WARN model probe: The model is not deterministic: {rate}" in stderr
    from junitparser import JUnitXml

    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "junit.xml"))))
    case = next(c for c in suite if c.name == "model_probe")
    assert case.is_passed and case.system_out.startswith(f"WARNING: The model is not deterministic: {rate}")


def test_eager_module_left_in_training_mode_is_put_in_eval_and_deterministic(tmp_path: Path) -> None:
    from audit.context import AuditContext
    from audit.data import AuditDataset
    from audit.probe import probe_model
    from models.adapter import TorchAdapter

    x = np.random.default_rng(0).uniform(-1, 1, size=(40, 4)).astype(np.float32)
    ds = AuditDataset(name="eval", inputs=x, target=np.zeros(40, np.int64), class_names=None, sensitive_features=None,
                      feature_names=None, input_kind="tabular", path="mem", format="npz", sha256="0")
    adapter = TorchAdapter(Dropout().train(), input_kind="tabular", device=torch.device("cpu"))
    probe = probe_model(AuditContext(adapter, {"eval": ds}, batch_size=16))
    assert probe.deterministic and probe.training_mode is False and not probe.findings
    adapter.module.train()  # a module that stays in training mode (e.g. set back by a wrapper)
    probe = probe_model(AuditContext(adapter, {"eval": ds}, batch_size=16))
    assert not probe.deterministic and probe.training_mode is True
    assert "a torch module is in training mode" in probe.findings[0]


def test_deterministic_model_has_no_finding_and_adds_no_forward_pass(tmp_path: Path) -> None:
    """The probe fills the logits cache the checks read: the eval set goes through the model once
    (plus the 2-row dry run and the probe's repeated batch, twice)."""
    from audit.runner import audit_adapter, load_inputs

    model = _script(tmp_path, Counting())
    cfg = _cfg(model, _data(tmp_path, marker_col=None), "checks.performance.thresholds.accuracy.min=0")
    adapter, datasets = load_inputs(cfg)
    counter = adapter.module
    before = int(counter.rows)
    result = audit_adapter(cfg, adapter, datasets)
    assert int(counter.rows) - before == N + 2 * 16
    assert result.probe is not None and result.probe.deterministic and result.probe.findings == []
    assert result.probe.disagreement_rate == 0 and result.probe.max_abs_diff == 0
    assert result.summary.status == "pass"


def test_torchscript_head_search_ignores_nonfinite_rows() -> None:
    """The TorchScript feature head is found on the finite rows of a batch (a NaN row made it crash)."""
    from models.adapter import TorchAdapter

    x = np.random.default_rng(0).uniform(-1, 1, size=(6, 4)).astype(np.float32)
    x[0, 0] = 5.0  # row 0 gives NaN logits
    adapter = TorchAdapter(torch.jit.script(NaNWhereMarked()), input_kind="tabular", device=torch.device("cpu"))
    out = adapter.logits(torch.from_numpy(x))
    assert bool(torch.isnan(out[0]).all()) and bool(torch.isfinite(out[1:]).all())
    assert adapter.has_features and adapter.features(torch.from_numpy(x[1:])).shape == (5, 4)


def test_nonfinite_logits_on_data_ood_exit_2_from_the_ood_check(tmp_path: Path) -> None:
    """data.ood goes through the context's logits: its NaN rows are named, not a crash or a silent AUROC."""
    rng = np.random.default_rng(1)
    ood = rng.uniform(-1, 1, size=(30, 4)).astype(np.float32)
    ood[[2, 9], 0] = 5.0
    np.savez(tmp_path / "ood.npz", x=ood)
    model = _script(tmp_path, NaNWhereMarked())
    cfg = load_config(None, {"model.path": str(model), "data.eval.path": str(_data(tmp_path, marker_col=None)),
                             "data.ood.path": str(tmp_path / "ood.npz"), "device": "cpu"},
                      ["data.ood.target=null", "energy.track=false", "checks.ood.synthetic=false",
                       *[f"checks.{c}.enabled=false" for c in list_checks() if c != "ood"]])
    with pytest.raises(InputError, match=r"2 of 30 rows of data\.ood give non-finite .*\(rows 2, 9\)"):
        run_audit(cfg)
