"""Hostile and oversized configs and data files through the real CLI: each is refused before any work with
exit code 2, one line naming the problem, no traceback, nothing written, and (bombs) within a time bound.

Every input is generated here, small on disk: alias bombs, deep nesting, huge scalars, npz files that inflate
to gigabytes or lie in their headers, a Parquet footer that lies, a PNG whose header claims 400 megapixels.
One case runs in a subprocess to prove that ``--max-samples`` keeps memory bounded on an npz bomb.
"""

from __future__ import annotations

import functools
import io
import json
import os
import resource
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.lib import format as npy_format
from peak_rss import CHILD, peak_mb
from tiny_models import TinyCNN, TinyMLP
from typer.testing import CliRunner

import cli
from audit.config import MAX_YAML_DEPTH, load_config

ROOT = Path(__file__).resolve().parents[2]
BOMB_SECONDS = 10.0  # generous for a busy 2-core CI machine; the guards answer in well under a second
runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------ helpers


def invoke(*args: object) -> tuple[int, str, str, float]:
    start = time.perf_counter()
    result = runner.invoke(cli.app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr, time.perf_counter() - start


def assert_refused(args: list[object], out: Path, *words: str, seconds: float = BOMB_SECONDS) -> str:
    """Exit 2, one line on stderr holding every word, no traceback, nothing written to ``out``, fast."""
    code, stdout, stderr, elapsed = invoke(*args)
    assert code == 2, f"exit {code}: {stderr[-1500:]}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepaudit: error: "), stderr[-1500:]
    assert "Traceback" not in stdout + stderr
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    assert not out.exists() or not any(out.iterdir()), "nothing may be written"
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    return lines[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A TorchScript CNN (1x8x8 images, 3 classes) and MLP (4 features, 2 classes). The audit's modules are
    imported here, so the time bounds measure the guards, not the first import of torch's libraries."""
    import audit.runner  # noqa: F401
    import reports  # noqa: F401

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    paths = {"cnn": folder / "cnn.pt", "mlp": folder / "mlp.pt"}
    torch.jit.save(torch.jit.script(TinyCNN().eval()), str(paths["cnn"]))
    torch.jit.save(torch.jit.script(TinyMLP().eval()), str(paths["mlp"]))
    return paths


def audit(model: Path, data: Path, out: Path, *extra: object) -> list[object]:
    return ["audit", "--model", model, "--data", data, "--out", out, "--quiet", "--device", "cpu",
            "--set", "energy.track=false", *extra]


def only_performance() -> list[str]:
    """Flags that turn every check but performance off: should a guard be missing, the audit ends quickly."""
    from audit.registry import list_checks

    return [flag for c in list_checks() if c != "performance" for flag in ("--set", f"checks.{c}.enabled=false")]


def npy_header(shape: tuple[int, ...], descr: str = "<f4", fortran: bool = False) -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buf.getvalue()


_BLOCK = 1 << 22


@functools.cache
def _filled_block(fill: int) -> tuple[bytes, bytes]:
    """4 MiB of one byte value, and its raw deflate stream ending in a full flush (repeatable verbatim)."""
    block = bytes([fill]) * _BLOCK
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return block, comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)


def deflated(header: bytes, n_bytes: int, fill: int = 0) -> tuple[bytes, int, int]:
    """(raw deflate stream, CRC-32, size) of ``header`` and ``n_bytes`` bytes of ``fill``: ~1000:1, built in
    milliseconds per GB by repeating one compressed block (a full flush makes each block independent)."""
    block, packed = _filled_block(fill)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts, crc = [comp.compress(header), comp.flush(zlib.Z_FULL_FLUSH)], zlib.crc32(header)
    blocks, rest = divmod(n_bytes, _BLOCK)
    parts.append(packed * blocks)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    parts += [comp.compress(block[:rest]), comp.flush()]
    return b"".join(parts), zlib.crc32(block[:rest], crc), len(header) + n_bytes


def write_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip from ready-made members (name, data as stored, CRC-32, declared size, method); sizes may lie.
    A declared size of 4 GiB or more goes in a zip64 extra field."""
    central, offset = [], 0
    with path.open("wb") as handle:
        for name, data, crc, size, method in members:
            raw = name.encode()
            extra = struct.pack("<HHQ", 1, 8, size) if size >= 0xFFFFFFFF else b""
            size32 = min(size, 0xFFFFFFFF)
            handle.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0x21, crc, len(data), size32,
                                     len(raw), len(extra)) + raw + extra + data)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, 0, 0x21, crc, len(data),
                                       size32, len(raw), len(extra), 0, 0, 0, 0, offset) + raw + extra)
            offset = handle.tell()
        directory = b"".join(central)
        handle.write(directory + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                                             len(directory), offset, 0))
    return path


def member(name: str, array: np.ndarray) -> tuple[str, bytes, int, int, int]:
    """A genuine stored .npy member."""
    buf = io.BytesIO()
    npy_format.write_array(buf, array, allow_pickle=False)
    data = buf.getvalue()
    return name, data, zlib.crc32(data), len(data), zipfile.ZIP_STORED


def npz_bomb(path: Path, rows: int, fill: int = 0) -> Path:
    """x: (rows, 1, 8, 8) float32 of one byte value and y: int8 zeros (class 0), both deflated ~1000:1."""
    x, x_crc, x_size = deflated(npy_header((rows, 1, 8, 8)), rows * 256, fill)
    y, y_crc, y_size = deflated(npy_header((rows,), "|i1"), rows)
    return write_zip(path, [("x.npy", x, x_crc, x_size, zipfile.ZIP_DEFLATED),
                            ("y.npy", y, y_crc, y_size, zipfile.ZIP_DEFLATED)])


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "audit.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def laughs(levels: int = 9, indent: str = "    ") -> str:
    """Billion laughs: 9 levels of 9 aliases each, 9**9 values once expanded."""
    lines = [f'{indent}a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{indent}{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- configs


def test_alias_bomb_in_init_args(tmp_path: Path, models: dict[str, Path]) -> None:
    cfg = write_yaml(tmp_path, f"model:\n  path: {models['cnn']}\n  init_args:\n{laughs()}\n"
                               "data: {eval: {path: d.npz}}\noutput: {dir: out}\n")
    assert_refused(["audit", "-c", cfg, "--quiet"], tmp_path / "out", "100,000 values", "aliases", "audit.yaml",
                   seconds=2.0)


def test_alias_bomb_as_a_scalar_value(tmp_path: Path, models: dict[str, Path]) -> None:
    cfg = write_yaml(tmp_path, f"bomb:\n{laughs()}\nmodel: {{path: {models['cnn']}}}\n"
                               "data: {eval: {path: d.npz}}\nseed: *i\noutput: {dir: out}\n")
    assert_refused(["audit", "-c", cfg, "--quiet"], tmp_path / "out", "100,000 values", seconds=2.0)


def test_alias_bomb_in_a_check_section(tmp_path: Path, models: dict[str, Path]) -> None:
    cfg = write_yaml(tmp_path, f"x:\n{laughs(8)}\nmodel: {{path: {models['cnn']}}}\ndata: {{eval: {{path: d.npz}}}}\n"
                               "checks: {adversarial: {eps: *h}}\noutput: {dir: out}\n")
    assert_refused(["audit", "-c", cfg, "--quiet"], tmp_path / "out", "alias bomb", seconds=2.0)


def test_merge_key_bomb(tmp_path: Path, models: dict[str, Path]) -> None:
    lines = ["m0: &m0 {k0: 1, k1: 2, k2: 3, k3: 4}"]
    for i in range(1, 10):
        lines.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 10) + f"], z{i}: 0}}")
    cfg = write_yaml(tmp_path, "\n".join(lines) + f"\nmodel: {{path: {models['cnn']}}}\n"
                               "data: {eval: {path: d.npz}}\noutput: {dir: out}\n")
    assert_refused(["audit", "-c", cfg, "--quiet"], tmp_path / "out", "100,000 values", seconds=2.0)


def test_recursive_alias(tmp_path: Path, models: dict[str, Path]) -> None:
    cfg = write_yaml(tmp_path, f"model: {{path: {models['cnn']}, init_args: &r {{self: *r}}}}\n"
                               "data: {eval: {path: d.npz}}\noutput: {dir: out}\n")
    assert_refused(["audit", "-c", cfg, "--quiet"], tmp_path / "out", "refers to a node that contains it")


def test_alias_bomb_in_a_set_value(tmp_path: Path, models: dict[str, Path]) -> None:
    levels = ["[&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        levels.append(f"&{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    value = ", ".join(levels) + "]"
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], tmp_path / "d.npz", out, "--set", f"model.init_args.x={value}"), out,
                   "--set model.init_args.x", "100,000 values", seconds=2.0)


def test_deep_nesting_flow(tmp_path: Path, models: dict[str, Path]) -> None:
    cfg = write_yaml(tmp_path, f"model: {{path: {models['cnn']}, init_args: {{x: {'[' * 10_000}{']' * 10_000}}}}}\n"
                               "data: {eval: {path: d.npz}}\noutput: {dir: out}\n")
    assert_refused(["audit", "-c", cfg, "--quiet"], tmp_path / "out", f"deeper than {MAX_YAML_DEPTH} levels")


def test_deep_nesting_block_mappings(tmp_path: Path) -> None:
    text = "".join(f"{'  ' * i}k{i}:\n" for i in range(100)) + f"{'  ' * 100}1\n"
    cfg = write_yaml(tmp_path, text)
    assert_refused(["audit", "-c", cfg, "--quiet", "--out", tmp_path / "out"], tmp_path / "out", "deeper than")


def test_deep_nesting_through_aliases(tmp_path: Path, models: dict[str, Path]) -> None:
    """Each anchor is 40 levels deep, within the limit; chained through aliases they are 200 deep."""
    lines = []
    for i in range(5):
        inner = f"*a{i - 1}" if i else "1"
        lines.append(f"a{i}: &a{i} {'[' * 40}{inner}{']' * 40}")
    cfg = write_yaml(tmp_path, "\n".join(lines) + f"\nmodel: {{path: {models['cnn']}, init_args: {{x: *a4}}}}\n"
                               "data: {eval: {path: d.npz}}\noutput: {dir: out}\n")
    assert_refused(["audit", "-c", cfg, "--quiet"], tmp_path / "out", "deeper than", "aliases expanded")


def test_deep_nesting_in_a_set_value(tmp_path: Path, models: dict[str, Path]) -> None:
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], tmp_path / "d.npz", out, "--set", "seed=" + "[" * 5000 + "]" * 5000), out,
                   "--set seed", "deeper than")


def test_one_gigabyte_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "huge.yaml"
    with cfg.open("wb") as handle:
        handle.write(b"model: {path: m.pt}\n# ")
        handle.truncate(1 << 30)  # sparse: 1 GiB on paper, nothing on disk
    assert_refused(["audit", "-c", cfg, "--quiet", "--out", tmp_path / "out"], tmp_path / "out",
                   "the config file is over the limit", "1 MiB", seconds=2.0)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_endless_config_file(tmp_path: Path) -> None:
    """/dev/zero never ends: only the first MiB is read."""
    assert_refused(["audit", "-c", "/dev/zero", "--quiet", "--out", tmp_path / "out"], tmp_path / "out",
                   "the config file is over the limit", seconds=2.0)


def test_config_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").mkdir()
    assert_refused(["audit", "-c", tmp_path / "cfg.yaml", "--quiet", "--out", tmp_path / "out"], tmp_path / "out",
                   "cannot be read")


def test_huge_scalar_in_config(tmp_path: Path, models: dict[str, Path]) -> None:
    cfg = write_yaml(tmp_path, f"model: {{path: {models['cnn']}}}\ndata: {{eval: {{path: d.npz}}}}\n"
                               f"attestations: {{logging: {{statement: '{'x' * (2 << 20)}'}}}}\n")
    assert_refused(["audit", "-c", cfg, "--quiet", "--out", tmp_path / "out"], tmp_path / "out", "over the limit")


def test_huge_set_value(tmp_path: Path, models: dict[str, Path]) -> None:
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], tmp_path / "d.npz", out, "--set", "report.title=" + "x" * (2 << 20)), out,
                   "--set report.title", "over the limit")


def test_huge_integer_in_config(tmp_path: Path, models: dict[str, Path]) -> None:
    cfg = write_yaml(tmp_path, f"model: {{path: {models['cnn']}}}\ndata: {{eval: {{path: d.npz}}}}\nseed: {'9' * 5000}\n")
    assert_refused(["audit", "-c", cfg, "--quiet", "--out", tmp_path / "out"], tmp_path / "out", "value cannot be read")


def test_impossible_date_in_a_set_value(tmp_path: Path, models: dict[str, Path]) -> None:
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], tmp_path / "d.npz", out, "--set", "attestations.logging.date=2026-13-45"),
                   out, "--set attestations.logging.date", "month must be in 1..12")


@pytest.mark.parametrize("text, words", [
    ("- model\n- data\n", ["must be a mapping", "got list"]),
    ("just a string\n", ["must be a mapping", "got str"]),
    ("model: [1, 2]\ndata: {eval: {path: d.npz}}\n", ["key 'model'"]),
    ("model: {path: m.pt}\ndata: {eval: {path: d.npz}}\nseed: abc\n", ["key 'seed'", "integer"]),
    ("model: {path: m.pt}\ndata: {eval: {path: d.npz}}\nbatch_size: -1\n", ["key 'batch_size'", "greater than 0"]),
    ("model: {path: m.pt}\ndata: {eval: {path: d.npz, max_bytes: 2 gallons}}\n", ["max_bytes", "8GiB"]),
    ("model: {path: m.pt}\ndata: {eval: {path: d.npz}}\n'\\x00\": [\n", ["not valid YAML"]),
], ids=["list", "scalar", "model-is-a-list", "seed-not-int", "negative-batch", "max-bytes-not-a-size", "broken-yaml"])
def test_config_of_the_wrong_shape(tmp_path: Path, text: str, words: list[str]) -> None:
    cfg = write_yaml(tmp_path, text)
    assert_refused(["audit", "-c", cfg, "--quiet", "--out", tmp_path / "out"], tmp_path / "out", *words)


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    cfg = tmp_path / "audit.yaml"
    cfg.write_bytes(b"model: {path: \xff\xfe\x00\x81}\n")
    assert_refused(["audit", "-c", cfg, "--quiet", "--out", tmp_path / "out"], tmp_path / "out", "cannot be read")


def test_python_tags_never_run(tmp_path: Path, models: dict[str, Path]) -> None:
    marker = tmp_path / "ran"
    cfg = write_yaml(tmp_path, f"model: {{path: {models['cnn']}, init_args: {{x: !!python/object/apply:os.system "
                               f"['touch {marker}']}}}}\ndata: {{eval: {{path: d.npz}}}}\noutput: {{dir: out}}\n")
    assert_refused(["audit", "-c", cfg, "--quiet"], tmp_path / "out", "not valid YAML", "python/object/apply")
    assert not marker.exists()


def test_deep_json_model_args(tmp_path: Path, models: dict[str, Path]) -> None:
    out = tmp_path / "out"
    deep = '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert_refused(audit(models["cnn"], tmp_path / "d.npz", out, "--model-args", deep), out, "--model-args")


def test_model_args_too_deep_for_the_limit(tmp_path: Path, models: dict[str, Path]) -> None:
    out = tmp_path / "out"
    deep = '{"x": ' + "[" * 200 + "]" * 200 + "}"
    assert_refused(audit(models["cnn"], tmp_path / "d.npz", out, "--model-args", deep), out, "--model-args",
                   "deeper than")


def test_alias_bomb_in_a_counterfactual_terms_file(tmp_path: Path) -> None:
    """The terms file of fairness.counterfactual_text is user YAML too: read within the same limits."""
    from audit.checks.counterfactual import CounterfactualConfig, load_terms
    from audit.errors import ConfigError

    terms = tmp_path / "terms.yaml"
    terms.write_text(f"x:\n{laughs()}\ngender: {{female: *i, male: *i}}\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="100,000 values once its aliases"):
        load_terms(CounterfactualConfig(terms_file=str(terms)))
    assert time.perf_counter() - start < 2.0


def test_ordinary_anchors_still_work(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path, "model: {path: m.pt, init_args: &args {n: 3, sizes: &s [8, 8]}}\n"
                               "data: {eval: &d {path: d.npz, max_samples: 10}, reference: *d}\n"
                               "checks: {performance: {thresholds: {accuracy: &t {min: 0.5, level: warn}, ece: {max: 0.2}}}}\n"
                               "report: {signatories: [&o {role: Model owner}, *o]}\n")
    cfg_obj = load_config(cfg)
    assert cfg_obj.model.init_args == {"n": 3, "sizes": [8, 8]}
    assert cfg_obj.data.reference is not None and cfg_obj.data.reference.max_samples == 10
    assert [s.role for s in cfg_obj.report.signatories] == ["Model owner", "Model owner"]


# ----------------------------------------------------------------------------------------------- npz


def test_npz_bomb_over_the_memory_budget(tmp_path: Path, models: dict[str, Path]) -> None:
    data = npz_bomb(tmp_path / "bomb.npz", rows=2_000_000)  # 490 KB on disk, 512 MB inflated
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], data, out, "--set", "data.eval.max_bytes=256MiB", *only_performance()), out,
                   "array 'x'", "(2000000, 1, 8, 8)", "over the budget of 256.0 MiB", "data.eval.max_samples",
                   "data.eval.max_bytes", seconds=3.0)


def test_npz_header_claiming_ten_billion_rows(tmp_path: Path, models: dict[str, Path]) -> None:
    header = npy_header((10**10, 1, 8, 8))
    data = write_zip(tmp_path / "lie.npz", [("x.npy", header + bytes(256), zlib.crc32(header + bytes(256)),
                                             len(header) + 256, zipfile.ZIP_STORED), member("y.npy", np.zeros(1, np.int8))])
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], data, out), out, "claims shape (10000000000, 1, 8, 8)", "corrupt",
                   seconds=3.0)


def test_npz_ten_billion_rows_that_agree_with_the_zip_entry(tmp_path: Path, models: dict[str, Path]) -> None:
    """Header and zip64 entry agree on 10**10 one-byte rows (10 GB, deflated to 10 MB): over the default budget,
    refused before one row is inflated (the CRC is never reached, so it is not computed here)."""
    rows = 10**10
    header = npy_header((rows, 1), "|u1")
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)
    blocks, rest = divmod(rows, _BLOCK)
    tail = comp.compress(bytes(rest)) + comp.flush()
    data = head + _filled_block(0)[1] * blocks + tail
    path = write_zip(tmp_path / "big.npz", [("x.npy", data, 0, len(header) + rows, zipfile.ZIP_DEFLATED)])
    out = tmp_path / "out"
    assert_refused(audit(models["mlp"], path, out, "--set", "data.eval.target=null"), out,
                   "loading 10,000,000,000 of 10,000,000,000 rows", "over the budget of 4.0 GiB", "max_samples",
                   seconds=3.0)


def test_npz_zip_entry_claims_more_than_deflate_can_produce(tmp_path: Path, models: dict[str, Path]) -> None:
    rows = 3_900_000  # header and zip entry agree on 3.9e6 rows (1 GB), the compressed stream is 100 bytes
    header = npy_header((rows, 1, 8, 8))
    data = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = data.compress(header) + data.flush()
    lie = write_zip(tmp_path / "lie.npz", [("x.npy", stream, 0, len(header) + rows * 256, zipfile.ZIP_DEFLATED)])
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], lie, out, "--set", "data.eval.target=null"), out,
                   "more than deflate can produce", seconds=3.0)


def test_npz_truncated_member(tmp_path: Path, models: dict[str, Path]) -> None:
    """The zip entry declares the whole array, the deflate stream stops halfway."""
    raw = npy_header((1000, 1, 8, 8)) + np.random.default_rng(0).random((1000, 1, 8, 8), dtype=np.float32).tobytes()
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = comp.compress(raw) + comp.flush()
    bad = write_zip(tmp_path / "cut.npz", [("x.npy", data[: len(data) // 2], zlib.crc32(raw), len(raw), zipfile.ZIP_DEFLATED),
                                           member("y.npy", np.zeros(1000, np.int8))])
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], bad, out), out, "not a valid .npz")


def test_npz_truncated_file(tmp_path: Path, models: dict[str, Path]) -> None:
    path = tmp_path / "half.npz"
    np.savez(path, x=np.zeros((100, 1, 8, 8), np.float32), y=np.zeros(100, np.int64))
    path.write_bytes(path.read_bytes()[:3000])
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], path, out), out, "not a valid .npz")


def test_npz_bad_crc(tmp_path: Path, models: dict[str, Path]) -> None:
    name, data, crc, size, method = member("x.npy", np.ones((50, 1, 8, 8), np.float32))
    bad = write_zip(tmp_path / "crc.npz", [(name, data, crc ^ 1, size, method), member("y.npy", np.zeros(50, np.int8))])
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], bad, out), out, "not a valid .npz", "crc")


def test_npz_object_array_is_never_unpickled(tmp_path: Path, models: dict[str, Path]) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    buf = io.BytesIO()
    npy_format.write_array(buf, np.array([Payload()] * 3, dtype=object), allow_pickle=True)
    data = buf.getvalue()
    path = write_zip(tmp_path / "obj.npz", [("x.npy", data, zlib.crc32(data), len(data), zipfile.ZIP_STORED)])
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], path, out, "--set", "data.eval.target=null"), out, "pickled objects",
                   "never loaded")
    assert not marker.exists()


def test_npz_member_that_is_not_npy(tmp_path: Path, models: dict[str, Path]) -> None:
    text = b"#!/bin/sh\necho not an array\n"
    path = write_zip(tmp_path / "odd.npz", [("x", text, zlib.crc32(text), len(text), zipfile.ZIP_STORED),
                                            member("y.npy", np.zeros(3, np.int8))])
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], path, out), out, "member 'x'", "is not a .npy array")


def test_npz_broken_npy_header(tmp_path: Path, models: dict[str, Path]) -> None:
    header = b"\x93NUMPY\x01\x00" + struct.pack("<H", 46) + b"{'descr': '<f4', 'shape': __import__('os')}".ljust(45) + b"\n"
    path = write_zip(tmp_path / "hdr.npz", [("x.npy", header, zlib.crc32(header), len(header), zipfile.ZIP_STORED)])
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], path, out, "--set", "data.eval.target=null"), out, "broken .npy header")


def test_npz_negative_dimension(tmp_path: Path, models: dict[str, Path]) -> None:
    header = npy_header((-5, 4))
    path = write_zip(tmp_path / "neg.npz", [("x.npy", header, zlib.crc32(header), len(header), zipfile.ZIP_STORED)])
    out = tmp_path / "out"
    assert_refused(audit(models["mlp"], path, out, "--set", "data.eval.target=null"), out, "claims shape (-5, 4)")


def test_npz_mismatched_lengths(tmp_path: Path, models: dict[str, Path]) -> None:
    """Found from the headers: nothing is decompressed (x would inflate to 512 MB)."""
    rows = 2_000_000
    data, crc, size = deflated(npy_header((rows, 1, 8, 8)), rows * 256)
    path = write_zip(tmp_path / "len.npz", [("x.npy", data, crc, size, zipfile.ZIP_DEFLATED),
                                            member("y.npy", np.zeros(rows - 1, np.int8))])
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], path, out), out, "target array 'y' has 1999999 entries", "2000000 samples",
                   seconds=3.0)


def test_npz_sensitive_feature_of_another_length(tmp_path: Path, models: dict[str, Path]) -> None:
    path = tmp_path / "s.npz"
    np.savez(path, x=np.zeros((20, 1, 8, 8), np.float32), y=np.zeros(20, np.int64), g=np.array(["a"] * 19))
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], path, out, "--sensitive", "g"), out, "sensitive feature array 'g'", "19")


def test_npz_nan_bomb_with_max_samples_is_found_in_the_kept_rows(tmp_path: Path, models: dict[str, Path]) -> None:
    data = npz_bomb(tmp_path / "nan.npz", rows=1_000_000, fill=0xFF)  # every float32 is NaN
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], data, out, "--max-samples", "50"), out, "NaN or inf", "50 row(s)")


def test_npz_bomb_with_max_samples_keeps_memory_bounded(tmp_path: Path, models: dict[str, Path]) -> None:
    """1 GB of NaN floats deflated to 1 MB; --max-samples 50 decodes 50 rows, in bounded memory, and finds
    them NaN (exit 2). Run in a subprocess with an address-space cap, reading its peak RSS (about 430 MB, most
    of it torch; loading the array whole peaks above 1.3 GB)."""
    rows = 4_000_000
    data = npz_bomb(tmp_path / "bomb.npz", rows=rows, fill=0xFF)
    assert data.stat().st_size < 2_000_000
    out = tmp_path / "out"

    def cap() -> None:
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        limit = 8 << 30 if hard == resource.RLIM_INFINITY else min(8 << 30, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, audit(models["cnn"], data, out, "--max-samples", "50"))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, preexec_fn=cap)
    elapsed = time.perf_counter() - start
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("MAXRSS_KB")]
    peak = peak_mb(proc.stderr)
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert len(lines) == 1 and "NaN or inf" in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())
    assert peak < 800, f"peak RSS {peak:.0f} MB while the array inflates to {rows * 256 / 1e9:.1f} GB"
    assert elapsed < 60


def test_npz_max_samples_reads_the_same_rows_as_a_whole_load(tmp_path: Path) -> None:
    """Streaming only the kept rows picks, for one seed, exactly the rows a whole load and subset picks."""
    from audit.config import DataSpec
    from audit.data import load_dataset

    rng = np.random.default_rng(3)
    x, y = rng.random((3000, 2, 5), dtype=np.float32), rng.integers(0, 4, 3000)
    g = rng.choice(["u", "v", "w"], 3000)
    for name, save in (("s.npz", np.savez), ("c.npz", np.savez_compressed)):
        save(tmp_path / name, x=x, y=y, g=g, xf=np.asfortranarray(x))
        for seed in (0, 7):
            expect = np.sort(np.random.default_rng(seed).choice(3000, size=101, replace=False))
            for x_name in ("x", "xf"):
                ds = load_dataset(DataSpec(path=tmp_path / name, features=x_name, sensitive_features=["g"],
                                           max_samples=101), "eval", seed=seed)
                np.testing.assert_array_equal(ds.indices, expect)
                np.testing.assert_array_equal(ds.inputs, x[expect])
                np.testing.assert_array_equal(ds.target, y[expect])
                assert ds.sensitive_features["g"].tolist() == g[expect].tolist()


# ----------------------------------------------------------------------------------------- tables


def test_empty_csv(tmp_path: Path, models: dict[str, Path]) -> None:
    path = tmp_path / "e.csv"
    path.write_text("")
    out = tmp_path / "out"
    assert_refused(audit(models["mlp"], path, out), out, "is empty")


def test_csv_over_the_memory_budget(tmp_path: Path, models: dict[str, Path]) -> None:
    path = tmp_path / "big.csv"
    pd.DataFrame(np.zeros((20_000, 5)), columns=["a", "b", "c", "d", "y"]).to_csv(path, index=False)
    out = tmp_path / "out"
    assert_refused(audit(models["mlp"], path, out, "--set", "data.eval.max_bytes=64KiB", *only_performance()), out,
                   "of CSV text", "over the budget of 64.0 KiB", "data.eval.max_bytes")


def _parquet_with_rows_claimed(path: Path, claimed: int) -> Path:
    """A 3-row Parquet file whose footer claims ``claimed`` rows (file and row group)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 0.0], "c": [1.0, 1.0, 1.0], "d": [0.5, 0.5, 0.5],
                      "y": [0, 1, 0]})
    pq.write_table(table, path, compression="none")
    raw = path.read_bytes()
    size = int.from_bytes(raw[-8:-4], "little")
    footer = raw[-8 - size:-8]

    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
            v >>= 7
            if not v:
                return bytes(out)

    # Thrift compact: field 3 (num_rows, i64) of FileMetaData and RowGroup is 0x16 + zigzag varint.
    patched = footer.replace(b"\x16" + varint(3 * 2), b"\x16" + varint(claimed * 2))
    assert patched != footer
    path.write_bytes(raw[:-8 - size] + patched + len(patched).to_bytes(4, "little") + b"PAR1")
    return path


def test_parquet_footer_claiming_ten_billion_rows(tmp_path: Path, models: dict[str, Path]) -> None:
    path = _parquet_with_rows_claimed(tmp_path / "lie.parquet", 10**10)
    out = tmp_path / "out"
    assert_refused(audit(models["mlp"], path, out), out, "10,000,000,000 rows", "over the budget", seconds=3.0)


def test_parquet_that_is_not_parquet(tmp_path: Path, models: dict[str, Path]) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1" + os.urandom(100) + b"PAR1")
    out = tmp_path / "out"
    assert_refused(audit(models["mlp"], path, out), out, "cannot be read as PARQUET")


def test_injection_strings_in_column_names(tmp_path: Path, models: dict[str, Path]) -> None:
    """Column names are data: quoted in the one-line message, never interpreted (no newline, no escape)."""
    names = ["<script>alert(1)</script>", "$(touch pwned)", "a\nb\x1b[31m", "'; DROP TABLE x; --", "y"]
    path = tmp_path / "inj.csv"
    pd.DataFrame([[1.0, 2.0, 3.0, "t", 0]], columns=names).to_csv(path, index=False)
    out = tmp_path / "out"
    line = assert_refused(audit(models["mlp"], path, out), out, "is not numeric")
    assert "'; DROP TABLE x; --" in line and "\x1b" not in line
    assert not (ROOT / "pwned").exists() and not (tmp_path / "pwned").exists()


# ----------------------------------------------------------------------------------------- images


def _png(width: int, height: int, rows: int | None = None) -> bytes:
    """A 1-bit grayscale PNG of ``width`` x ``height`` zeros; ``rows`` limits the pixel data written."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    line = bytes(1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    pixels = b"".join(comp.compress(line) for _ in range(height if rows is None else rows)) + comp.flush()
    head = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _image_folder(tmp_path: Path, bad: bytes | None = None, name: str = "bad.png") -> Path:
    from PIL import Image

    root = tmp_path / "imgs"
    for k in range(3):
        (root / f"c{k}").mkdir(parents=True)
        Image.fromarray(np.full((8, 8), 40 * k, np.uint8)).save(root / f"c{k}" / "ok.png")
    if bad is not None:
        (root / "c0" / name).write_bytes(bad)
    return root


def test_png_decompression_bomb_over_twice_the_limit(tmp_path: Path, models: dict[str, Path]) -> None:
    root = _image_folder(tmp_path, _png(20_000, 20_000, rows=10))  # 400 megapixels claimed, 1 KB on disk
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], root, out, "--set", "data.eval.image_size=[8,8]"), out, "c0/bad.png",
                   "decompression bomb", seconds=3.0)


def test_png_decompression_bomb_between_the_limits(tmp_path: Path, models: dict[str, Path]) -> None:
    """100 megapixels: Pillow only warns on open; the audit refuses it from the header, before decoding."""
    root = _image_folder(tmp_path, _png(10_000, 10_000))  # 125 MB of pixels in 12 KB
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], root, out, "--set", "data.eval.image_size=[8,8]"), out,
                   "10000x10000 = 100,000,000 pixels", "MAX_IMAGE_PIXELS", seconds=5.0)


def test_images_over_the_memory_budget(tmp_path: Path, models: dict[str, Path]) -> None:
    root = _image_folder(tmp_path)
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], root, out, "--set", "data.eval.image_size=[1000,1000]",
                         "--set", "data.eval.max_bytes=1MiB", *only_performance()), out, "3 images of 1000x1000", "over the budget",
                   "data.eval.image_size")


def test_non_image_file_with_an_image_suffix(tmp_path: Path, models: dict[str, Path]) -> None:
    root = _image_folder(tmp_path, b"#!/bin/sh\nrm -rf /\n", name="evil.jpg")
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], root, out), out, "c0/evil.jpg", "cannot be read")


def test_truncated_png(tmp_path: Path, models: dict[str, Path]) -> None:
    root = _image_folder(tmp_path, _png(8, 8)[:40])
    out = tmp_path / "out"
    assert_refused(audit(models["cnn"], root, out), out, "c0/bad.png", "cannot be read")


def test_saved_hf_dataset_over_the_memory_budget(tmp_path: Path, models: dict[str, Path]) -> None:
    import datasets

    frame = pd.DataFrame(np.zeros((5000, 4), np.float32), columns=["a", "b", "c", "d"]).assign(y=0)
    path = tmp_path / "hf"
    datasets.Dataset.from_pandas(frame).save_to_disk(str(path))
    out = tmp_path / "out"
    assert_refused(audit(models["mlp"], path, out, "--set", "data.eval.features=[a,b,c,d]",
                         "--set", "data.eval.max_bytes=10KB", *only_performance()), out, "5,000 rows", "over the memory budget",
                   "data.eval.max_bytes")
