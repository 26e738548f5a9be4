"""Atomic writes: all or nothing, no temp file left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reports import io as report_io
from reports.io import atomic_write_text


def test_writes_and_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "report.html"
    atomic_write_text(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode("utf-8")
    assert os.listdir(target.parent) == ["report.html"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_replaces_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")
    target.chmod(0o600)
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("broken", ["replace", "fsync"])
def test_failure_leaves_original_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str) -> None:
    target = tmp_path / "results.json"
    target.write_text("original")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(report_io.os, broken, boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new content")
    monkeypatch.undo()
    assert target.read_text() == "original"
    assert os.listdir(tmp_path) == ["results.json"]


def test_failure_on_new_file_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_io.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("nope")))
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "out.txt", "x")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
