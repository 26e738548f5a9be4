"""Hostile model files through the real CLI: nothing is unpickled or run without --allow-pickle.

Every case is generated here (no committed binaries). A payload only ever creates the marker file
``tmp_path / "PAYLOAD_RAN"``; each refused case asserts exit code 2, one stderr line with its key
words, no traceback, nothing written to --out, and no marker. The last cases must keep working:
a clean ``.pt2`` and trusted pickles with ``--allow-pickle``.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TINY_MLP_CLASS, TinyMLP
from torch import nn
from typer.testing import CliRunner

import cli

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
MARKER = "PAYLOAD_RAN"
OTHER_CHECKS = ["corruption", "adversarial", "explanations", "explanations.attention", "ood", "drift", "privacy",
                "poisoning.backdoor_simulation", "poisoning.backdoor_scan", "privacy.extraction", "efficiency",
                "fairness.group_metrics", "fairness.counterfactual_text"]


# ---------------------------------------------------------------------------------------------
# Shared fixtures (this folder has no conftest of its own)


class Net(nn.Module):
    """4 features → 2 classes, with a buffer and a tensor constant, so a .pt2 has weights and constants."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.register_buffer("shift", torch.zeros(2))
        self.scale = torch.ones(2)  # a tensor attribute: torch.export stores it as a constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale + self.shift


class Payload:
    """Unpickling this runs ``exec``: it creates the marker, and nothing else."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def audit(model: Path, data: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    flags = ["audit", "--model", model, "--data", data, "--out", out, "--quiet", "--device", "cpu",
             "--input-kind", "tabular", "--set", "energy.track=false", "--set", "checks.performance.n_resamples=20"]
    for check in OTHER_CHECKS:
        flags += ["--set", f"checks.{check}.enabled=false"]
    return invoke(*flags, *extra)


@pytest.fixture(scope="module")
def clean_pt2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A clean torch.export archive with a dynamic batch, as {entry name without the root folder: bytes}."""
    torch.manual_seed(0)
    program = torch.export.export(Net().eval(), (torch.randn(3, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path_factory.mktemp("clean") / "net.pt2"
    torch.export.save(program, path)
    with zipfile.ZipFile(path) as zf:
        return {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist()}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "table.npz"
    np.savez(path, x=rng.normal(size=(40, 4)).astype(np.float32), y=rng.integers(0, 2, 40))
    return path


def write_zip(path: Path, files: dict[str, bytes], root: str = "net", compress: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in files.items():
            zf.writestr(f"{root}/{name}" if root else name, data)
    return path


def program_json(files: dict[str, bytes]) -> dict:
    return json.loads(files["models/model.json"])


def with_program(files: dict[str, bytes], edit: Callable[[dict], object]) -> dict[str, bytes]:
    program = program_json(files)
    edit(program)
    return {**files, "models/model.json": json.dumps(program).encode()}


def with_config(files: dict[str, bytes], name: str, edit: Callable[[dict], object]) -> dict[str, bytes]:
    config = json.loads(files[name])
    edit(config)
    return {**files, name: json.dumps(config).encode()}


def rename(obj: object, old: str, new: str) -> object:
    """Every key and string value equal to ``old`` in a JSON tree, renamed."""
    if isinstance(obj, dict):
        return {(new if k == old else k): rename(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rename(v, old, new) for v in obj]
    return new if obj == old else obj


def py_path(path: Path) -> str:
    """A Python expression for ``path`` with no dots or quotes in it (FX splits attribute names on dots)."""
    text = str(path)
    return '"' + "%c" * len(text) + '" % (' + ", ".join(str(ord(c)) for c in text) + ")"


def pickled(obj: object, protocol: int = 4) -> bytes:
    return pickle.dumps(obj, protocol=protocol)


def torch_saved(obj: object, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# The corpus: (id, builder(tmp_path, clean_pt2) -> model path, extra CLI args, key words of the message)

Builder = Callable[[Path, dict[str, bytes]], Path]
WEIGHTS = "data/weights/model_weights_config.json"
CONSTANTS = "data/constants/model_constants_config.json"


def _pt2(edit: Callable[[Path, dict[str, bytes]], dict[str, bytes]], name: str = "net.pt2") -> Builder:
    return lambda tmp, files: write_zip(tmp / name, edit(tmp, dict(files)))


def _pickled_weight(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    files = with_config(files, WEIGHTS, lambda c: c["config"]["fc.weight"].update(use_pickle=True))
    files[f"data/weights/{json.loads(files[WEIGHTS])['config']['fc.weight']['path_name']}"] = pickled(Payload(tmp / MARKER))
    return files


def _constant_entry(path_name: str, payload: Callable[[Path], bytes], use_pickle: bool = True):
    def edit(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
        files = with_config(files, CONSTANTS, lambda c: c["config"]["scale"].update(path_name=path_name, use_pickle=use_pickle))
        files[f"data/constants/{path_name}"] = payload(tmp)
        return files
    return edit


def _zero_fill(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """An empty weight entry declared as 2**21 x 2**21 float32 (16 TiB) that torch would torch.zeros()."""
    files = with_config(files, WEIGHTS, lambda c: c["config"]["fc.weight"]["tensor_meta"].update(
        sizes=[{"as_int": 1 << 21}, {"as_int": 1 << 21}], strides=[{"as_int": 1 << 21}, {"as_int": 1}]))
    files["data/weights/weight_0"] = b""
    return files


def _sample_inputs(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    files["data/sample_inputs/model.pt"] = torch_saved(((Payload(tmp / MARKER),), {}))
    return files


def _legacy_weights(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    files["data/weights/model.pt"] = torch_saved({"fc.weight": Payload(tmp / MARKER)})
    return files


def _legacy_format(tmp: Path, files: dict[str, bytes]) -> Path:
    """The pre-2.8 layout torch.export.load falls back to when the archive has no archive_version."""
    legacy = {"version": b"8.20", "serialized_exported_program.json": files["models/model.json"],
              "serialized_state_dict.pt": torch_saved({}),
              "serialized_constants.pt": torch_saved({"scale": Payload(tmp / MARKER)}),
              "serialized_example_inputs.pt": torch_saved(((), {}))}
    return write_zip(tmp / "net.pt2", legacy, root="")


def _expr(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    evil = f"Symbol('s0', positive=True, integer=True) if open({str(tmp / MARKER)!r}, 'w') else 0"
    return with_program(files, lambda p: p["graph_module"]["graph"]["tensor_values"]["x"]["sizes"][0]["as_expr"]
                        .update(expr_str=evil))


def _guards(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    return with_program(files, lambda p: p.update(guards_code=[f"open({str(tmp / MARKER)!r}, 'w') is not None"]))


def _placeholder(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """A graph input named like code: FX pastes placeholder targets into the forward() it execs."""
    evil = f"x=open({py_path(tmp / MARKER)}, 'w')"
    def edit(p: dict) -> None:
        graph = p["graph_module"]["graph"]
        graph.update(rename({k: graph[k] for k in ("inputs", "nodes", "tensor_values")}, "x", evil))
    return with_program(files, edit)


def _buffer_fqn(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """A buffer named like code: FX writes get_attr targets as getattr(self, "<name>")."""
    evil = f'b", 0) if open({py_path(tmp / MARKER)}, "w") else getattr(self, "b'
    files = with_program(files, lambda p: p.update(rename(p, "shift", evil)))
    return with_config(files, WEIGHTS, lambda c: c.update(rename(c, "shift", evil)))


def _forward_arg_names(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    evil = f"x=open({str(tmp / MARKER)!r}, 'w')"
    return with_program(files, lambda p: p["graph_module"]["module_call_graph"][0]["signature"]
                        .update(forward_arg_names=[evil]))


def _spec(edit_context: Callable[[dict], None]) -> Callable[[Path, dict[str, bytes]], dict[str, bytes]]:
    def edit(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
        def program(p: dict) -> None:
            sig = p["graph_module"]["module_call_graph"][0]["signature"]
            spec = json.loads(sig["in_spec"])
            edit_context(spec[1]["children_spec"][1])  # the kwargs dict of (args, kwargs)
            sig["in_spec"] = json.dumps(spec)
        return with_program(files, program)
    return edit


def _string_input(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """A string graph input is pasted between quotes into the guard code torch execs."""
    evil = f"a' if open({str(tmp / MARKER)!r}, 'w') else '"
    return with_program(files, lambda p: p["graph_module"]["graph"]["inputs"].append({"as_string": evil}))


def _aoti(tmp: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    files["data/aotinductor/model/model.so"] = b"\x7fELF not really"
    return files


def _duplicate(tmp: Path, files: dict[str, bytes]) -> Path:
    path = write_zip(tmp / "net.pt2", files)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("net/MODELS/model.json", files["models/model.json"])  # torch matches names case-insensitively
    return path


def _bomb(tmp: Path, files: dict[str, bytes]) -> Path:
    path = write_zip(tmp / "net.pt2", files)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("net/extra/notes.txt", b"\0" * (24 << 20))  # 24 MiB of zeros in ~24 KiB
    return path


def _patched_central_directory(field: int) -> Callable[[Path, dict[str, bytes]], Path]:
    """A zip whose central directory lies about model.json: its compressed (offset 20) or its
    uncompressed size (offset 24) claims 1 GiB. zipfile opens it; torch's reader would trust it."""
    def build(tmp: Path, files: dict[str, bytes]) -> Path:
        data = bytearray(write_zip(tmp / "net.pt2", files).read_bytes())
        at = data.find(b"PK\x01\x02")  # the first central directory header
        while at >= 0:
            name_len = int.from_bytes(data[at + 28:at + 30], "little")
            if data[at + 46:at + 46 + name_len].endswith(b"models/model.json"):
                data[at + field:at + field + 4] = (1 << 30).to_bytes(4, "little")
                break
            at = data.find(b"PK\x01\x02", at + 4)
        (tmp / "net.pt2").write_bytes(bytes(data))
        return tmp / "net.pt2"
    return build


def _corrupt_deflate(tmp: Path, files: dict[str, bytes]) -> Path:
    """model.json deflated, then a byte of its compressed stream flipped: a CRC or inflate error on read."""
    path = write_zip(tmp / "net.pt2", files, compress=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("net/models/model.json")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _raw(name: str, data: Callable[[Path], bytes]) -> Builder:
    def build(tmp: Path, files: dict[str, bytes]) -> Path:
        path = tmp / name
        path.write_bytes(data(tmp))
        return path
    return build


def _hf_folder(tmp: Path, weights: Callable[[Path, dict], None]) -> Path:
    from tiny_text import tiny_bert

    model, tok = tiny_bert(layers=1)
    folder = tmp / "hf"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    for f in folder.glob("*.safetensors"):
        f.unlink()
    weights(folder, model.state_dict())
    return folder


def _hf_pickle(tmp: Path, files: dict[str, bytes]) -> Path:
    return _hf_folder(tmp, lambda f, sd: (f / "pytorch_model.bin").write_bytes(torch_saved({**sd, "x": Payload(tmp / MARKER)})))


def _hf_index_outside(tmp: Path, files: dict[str, bytes]) -> Path:
    def weights(folder: Path, sd: dict) -> None:
        (tmp / "outside.bin").write_bytes(torch_saved(sd))
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {k: "../outside.bin" for k in sd}}))
    return _hf_folder(tmp, weights)


def _torchscript_tampered(tmp: Path, files: dict[str, bytes]) -> Path:
    """A TorchScript archive whose data.pkl is a Python pickle: TorchScript's own unpickler refuses it."""
    src = tmp / "ts.pt"
    torch.jit.save(torch.jit.script(Net()), str(src))
    with zipfile.ZipFile(src) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    key = next(n for n in entries if n.endswith("/data.pkl"))
    entries[key] = pickled(Payload(tmp / MARKER), protocol=2)
    return write_zip(tmp / "model.ts", entries, root="")


def _torchscript_bomb(tmp: Path, files: dict[str, bytes]) -> Path:
    path = tmp / "model.ts"
    torch.jit.save(torch.jit.script(Net()), str(path))
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zf.namelist()[0].split("/")[0] + "/extra/blob", b"\0" * (24 << 20))
    return path


def _onnx_outside(tmp: Path, files: dict[str, bytes]) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder = tmp / "onnx"
    folder.mkdir()
    onnx.save_model(model, folder / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    (tmp / "secret.bin").write_bytes((folder / "w.bin").read_bytes())
    proto = onnx.load(folder / "m.onnx", load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../secret.bin"
    onnx.save_model(proto, folder / "m.onnx")
    return folder / "m.onnx"


def _symlink_to_hostile(tmp: Path, files: dict[str, bytes]) -> Path:
    target = write_zip(tmp / "real.bin", _pickled_weight(tmp, dict(files)))
    link = tmp / "net.pt2"
    link.symlink_to(target)
    return link


def _dangling(tmp: Path, files: dict[str, bytes]) -> Path:
    link = tmp / "net.pt2"
    link.symlink_to(tmp / "gone.pt2")
    return link


def _folder_named(name: str) -> Builder:
    def build(tmp: Path, files: dict[str, bytes]) -> Path:
        (tmp / name).mkdir()
        return tmp / name
    return build


PAYLOAD = lambda tmp: pickled(Payload(tmp / MARKER))  # noqa: E731
PICKLE = ["is a pickle", "--allow-pickle"]
PT2_PICKLE = ["torch.export.load would unpickle", "--allow-pickle"]
AS_CODE = ["torch would run as Python code", "--allow-pickle"]

CASES: list[tuple[str, Builder, list[str], list[str]]] = [
    # torch.export archives: what torch would unpickle
    ("pt2-pickled-weight", _pt2(_pickled_weight), [], PT2_PICKLE + ["pickled weight 'fc.weight'", "data/weights/weight_0"]),
    ("pt2-pickled-constant", _pt2(_constant_entry("tensor_0", PAYLOAD)), [], PT2_PICKLE + ["pickled constant 'scale'"]),
    ("pt2-custom-object", _pt2(_constant_entry("custom_obj_0", PAYLOAD, use_pickle=False)), [],
     PT2_PICKLE + ["custom (TorchScript) object", "data/constants/custom_obj_0"]),
    ("pt2-opaque-object", _pt2(_constant_entry("opaque_obj_0", PAYLOAD, use_pickle=False)), [],
     PT2_PICKLE + ["opaque Python object", "data/constants/opaque_obj_0"]),
    ("pt2-unknown-constant-kind", _pt2(_constant_entry("evil_0", PAYLOAD, use_pickle=False)), [], ["unknown kind", "'evil_0'"]),
    ("pt2-sample-inputs", _pt2(_sample_inputs), [], ["data/sample_inputs/model.pt", "weights_only=True", "--allow-pickle"]),
    ("pt2-legacy-weights", _pt2(_legacy_weights), [], ["data/weights/model.pt", "weights_only=True"]),
    ("pt2-legacy-format", _legacy_format, [], ["serialized_constants.pt", "weights_only=True"]),
    # torch.export archives: what torch would eval or exec
    ("pt2-shape-expression", _pt2(_expr), [], AS_CODE + ["shape expression", "not plain sympy"]),
    ("pt2-guard-code", _pt2(_guards), [], AS_CODE + ["guard", "not a plain shape comparison"]),
    ("pt2-placeholder-name", _pt2(_placeholder), [], AS_CODE + ["not a Python identifier"]),
    ("pt2-buffer-name", _pt2(_buffer_fqn), [], AS_CODE + ["not a dotted Python name"]),
    ("pt2-forward-arg-name", _pt2(_forward_arg_names), [], AS_CODE + ["forward argument name"]),
    ("pt2-kwargs-key", _pt2(_spec(lambda d: d.update(context=json.dumps(["a':__import__('os'),'b"])))), [],
     AS_CODE + ["input key"]),
    ("pt2-enum-context", _pt2(_spec(lambda d: d.update(context=json.dumps([{"__enum__": True, "fqn": "os:environ", "name": "x"}])))),
     [], AS_CODE + ["imports a module"]),
    ("pt2-defaultdict-factory", _pt2(_spec(lambda d: d.update(type="collections.defaultdict", context=json.dumps(
        {"default_factory_module": "os", "default_factory_name": "system", "dict_context": []})))), [], AS_CODE + ["defaultdict"]),
    ("pt2-string-input", _pt2(_string_input), [], AS_CODE + ["string graph input"]),
    ("pt2-aotinductor-even-with-allow-pickle", _pt2(_aoti), ["--allow-pickle"], ["AOTInductor", "data/aotinductor/model/model.so"]),
    # torch.export archives: broken containers
    ("pt2-not-a-zip", _raw("net.pt2", lambda t: b"definitely not a zip archive" * 10), [], ["not a valid torch.export", "zip"]),
    ("pt2-empty", _raw("net.pt2", lambda t: b""), [], ["not a valid torch.export"]),
    ("pt2-truncated", lambda t, f: _raw("net.pt2", lambda _: write_zip(t / "full.zip", f).read_bytes()[:3000])(t, f), [],
     ["not a valid torch.export"]),
    ("pt2-duplicate-entry", _duplicate, [], ["twice", "case-insensitively"]),
    ("pt2-zip-bomb", _bomb, [], ["zip bomb", "extra/notes.txt"]),
    ("pt2-entry-past-end", _patched_central_directory(20), [], ["truncated or corrupt", "models/model.json"]),
    ("pt2-stored-size-lie", _patched_central_directory(24), [], ["claims 1073741824 bytes"]),
    ("pt2-corrupt-entry", _corrupt_deflate, [], ["'net/models/model.json' cannot be read", "copy or save it again"]),
    ("pt2-broken-nested-zip", _pt2(lambda t, f: {**f, "data/sample_inputs/model.pt": b"PK\x03\x04 truncated"}), [],
     ["data/sample_inputs/model.pt", "weights_only=True"]),
    ("pt2-zero-filled-weight-even-with-allow-pickle", _pt2(_zero_fill), ["--allow-pickle"],
     ["17592186044416 bytes of zeros", "'fc.weight'"]),
    ("pt2-json-not-json", _pt2(lambda t, f: {**f, WEIGHTS: b"{not json"}), [], ["not valid JSON", "weights_config.json"]),
    # raw pickles and torch.save files
    ("pickle-pkl", _raw("model.pkl", PAYLOAD), [], PICKLE),
    ("pickle-bin", _raw("model.bin", PAYLOAD), [], PICKLE),
    ("pickle-ckpt-protocol2", _raw("model.ckpt", lambda t: pickled({"state_dict": {}, "hp": Payload(t / MARKER)}, 2)), [], PICKLE),
    ("pickle-bin-protocol0", _raw("weights.bin", lambda t: pickled(Payload(t / MARKER), 0)), [], PICKLE),
    ("pickle-pth-zip", _raw("model.pth", lambda t: torch_saved({"w": Payload(t / MARKER)})), [], PICKLE),
    ("pickle-pt-legacy", _raw("model.pt", lambda t: torch_saved(Payload(t / MARKER), _use_new_zipfile_serialization=False)),
     [], PICKLE),
    ("pickle-joblib", _raw("model.joblib", PAYLOAD), [], PICKLE),
    ("pickle-as-state-dict", _raw("weights.pt", lambda t: torch_saved({"w": Payload(t / MARKER)})),
     ["--model-format", "state_dict", "--model-class", TINY_MLP_CLASS], PICKLE),
    ("pickle-hf-folder", _hf_pickle, [], PICKLE + ["pytorch_model.bin"]),
    ("hf-index-outside-folder", _hf_index_outside, [], ["outside the folder", "../outside.bin"]),
    # other containers and the file system
    ("corrupt-bin", _raw("model.bin", lambda t: b"\x00 this is not a pickle, nor a zip" * 4), [],
     ["cannot be read as a torch.save file or a pickle (Unsupported operand 0)", "re-save it"]),
    ("empty-pt", _raw("model.pt", lambda t: b""), [], ["cannot be read", "(EOFError)"]),
    ("truncated-pickle-ckpt", _raw("model.ckpt", lambda t: PAYLOAD(t)[:-5]), [], ["cannot be read", "Unsupported operand"]),
    ("torchscript-tampered", _torchscript_tampered, [], ["not a loadable TorchScript"]),
    ("torchscript-zip-bomb", _torchscript_bomb, ["--model-format", "torchscript"], ["zip bomb"]),
    ("onnx-external-data-outside", _onnx_outside, [], ["not a loadable ONNX", "escapes model directory"]),
    ("symlink-to-hostile-pt2", _symlink_to_hostile, [], PT2_PICKLE),
    ("dangling-symlink", _dangling, [], ["does not exist"]),
    ("folder-named-pt2", _folder_named("net.pt2"), [], ["has no config.json"]),
    ("folder-named-safetensors", _folder_named("model.safetensors"), [], ["has no config.json"]),
]


@pytest.mark.parametrize(("builder", "extra", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_model_file_is_refused(tmp_path: Path, clean_pt2: dict[str, bytes], data_file: Path,
                                       builder: Builder, extra: list[str], words: list[str]) -> None:
    model = builder(tmp_path, clean_pt2)
    out = tmp_path / "out"
    code, stdout, stderr = audit(model, data_file, out, *extra)
    assert code == 2, (code, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in stdout + stderr and "will likely succeed" not in stderr  # no torch advice to unpickle
    assert not out.exists()
    assert not (tmp_path / MARKER).exists(), "the payload ran"


def test_compare_with_hostile_pt2_is_refused(tmp_path: Path, clean_pt2: dict[str, bytes], data_file: Path) -> None:
    base = write_zip(tmp_path / "base.pt2", clean_pt2)
    hostile = _pt2(_pickled_weight, "other.pt2")(tmp_path, clean_pt2)
    out = tmp_path / "out"
    code, stdout, stderr = invoke("compare", "--model", base, "--data", data_file, "--with", hostile, "--out", out,
                                  "--quiet", "--device", "cpu", "--set", "model.input_kind=tabular")
    assert code == 2, (stdout, stderr)
    assert len(stderr.strip().splitlines()) == 1 and "pickled weight 'fc.weight'" in stderr and "other.pt2" in stderr
    assert not out.exists() and not (tmp_path / MARKER).exists()


# ---------------------------------------------------------------------------------------------
# What must keep working


def test_clean_pt2_is_audited(tmp_path: Path, clean_pt2: dict[str, bytes], data_file: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = audit(write_zip(tmp_path / "net.pt2", clean_pt2), data_file, out)
    assert code in (0, 1), stderr
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["model"]["format"] == "export"
    assert [c["id"] for c in results["checks"]] == ["performance"]


def test_allow_pickle_loads_a_trusted_pt2_with_a_pickled_weight(tmp_path: Path, clean_pt2: dict[str, bytes],
                                                               data_file: Path) -> None:
    """--allow-pickle is what it says: the same archive layout with a real pickled tensor loads."""
    files = with_config(dict(clean_pt2), WEIGHTS, lambda c: c["config"]["fc.weight"].update(use_pickle=True))
    files["data/weights/weight_0"] = torch_saved(torch.nn.Parameter(torch.ones(2, 4)))
    path = write_zip(tmp_path / "net.pt2", files)
    assert audit(path, data_file, tmp_path / "refused")[0] == 2
    code, _, stderr = audit(path, data_file, tmp_path / "out", "--allow-pickle")
    assert code in (0, 1), stderr
    assert json.loads((tmp_path / "out" / "results.json").read_text())["provenance"]["model"]["format"] == "export"


@pytest.mark.parametrize("suffix", [".bin", ".ckpt", ".pkl"])
def test_allow_pickle_loads_a_trusted_raw_pickle(tmp_path: Path, data_file: Path, suffix: str) -> None:
    """Raw pickles (pickle.dump, not torch.save) of a module: refused, then honoured with --allow-pickle."""
    torch.manual_seed(0)
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps(TinyMLP(n_features=4, n_classes=2)))
    code, _, stderr = audit(path, data_file, tmp_path / "refused")
    assert code == 2 and "is a pickle" in stderr
    code, _, stderr = audit(path, data_file, tmp_path / "out", "--allow-pickle")
    assert code in (0, 1), stderr
    assert json.loads((tmp_path / "out" / "results.json").read_text())["provenance"]["model"]["format"] == "pickle"


def test_allow_pickle_loads_a_trusted_hf_folder_with_pickled_weights(tmp_path: Path) -> None:
    """transformers refuses a .bin the safe loader cannot read; with --allow-pickle the weights load as saved."""
    from models.errors import ModelInputError
    from models.loaders import load_model

    def weights(folder: Path, sd: dict) -> None:
        state = OrderedDict(sd)
        state._metadata = {"": {"version": np.int64(1)}}  # a numpy scalar: torch.load(weights_only=True) refuses it
        torch.save(state, folder / "pytorch_model.bin")
    folder = _hf_folder(tmp_path, weights)
    with pytest.raises(ModelInputError, match="pytorch_model.bin is a pickle"):
        load_model(folder, device="cpu")
    from tiny_text import tiny_bert

    model, tok = tiny_bert(layers=1)
    texts = ["good movie", "the bad plot !"]
    with torch.no_grad():
        expected = model(**tok(texts, padding=True, return_tensors="pt")).logits
    adapter = load_model(folder, device="cpu", allow_pickle=True)
    torch.testing.assert_close(adapter.predict_logits(texts), expected)


@pytest.mark.parametrize("fmt", [[], ["--model-format", "state_dict"]], ids=["detected", "state_dict"])
def test_allow_pickle_reads_a_checkpoint_dict_with_the_model_class(tmp_path: Path, data_file: Path, fmt: list[str]) -> None:
    """A Lightning-style .ckpt (a state dict beside arbitrary objects) loads into --model-class when trusted."""
    torch.manual_seed(0)
    path = tmp_path / "model.ckpt"
    model = TinyMLP(n_features=4, n_classes=2)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": {"lr": np.float64(0.1)}}, path)
    args = ["--model-class", TINY_MLP_CLASS, "--model-args", '{"n_features": 4, "n_classes": 2}', *fmt]
    assert audit(path, data_file, tmp_path / "refused", *args)[0] == 2
    code, _, stderr = audit(path, data_file, tmp_path / "out", *args, "--allow-pickle")
    assert code in (0, 1), stderr
