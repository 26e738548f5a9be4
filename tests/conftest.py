"""Tiny seeded models and data files, in every format the loaders accept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_models import TinyCNN, TinyMLP


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_thread():  # noqa: ANN201
    """Tiny models and small SVDs run fastest on one thread (torch and the BLAS behind numpy), and the CI
    machine has two cores. Use it per module with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def tiny_mlp() -> TinyMLP:
    torch.manual_seed(0)
    return TinyMLP().eval()


@pytest.fixture
def image_npz(tmp_path: Path) -> Path:
    """60 random 1×8×8 images in [0, 1], labels 0..2, and a group array."""
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(path, x=rng.random((60, 1, 8, 8), dtype=np.float32), y=rng.integers(0, 3, 60),
             group=rng.choice(["a", "b"], 60))
    return path


@pytest.fixture
def tabular_csv(tmp_path: Path) -> Path:
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 4)).astype(np.float32), columns=["f1", "f2", "f3", "f4"])
    frame["label"] = rng.integers(0, 2, 50)
    frame["sex"] = rng.choice(["f", "m"], 50)
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def torchscript_file(tmp_path: Path, tiny_cnn: TinyCNN) -> Path:
    path = tmp_path / "model.ts.pt"
    torch.jit.save(torch.jit.script(tiny_cnn), str(path))
    return path


@pytest.fixture
def safetensors_file(tmp_path: Path, tiny_cnn: TinyCNN) -> Path:
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file(tiny_cnn.state_dict(), str(path))
    return path


@pytest.fixture
def state_dict_file(tmp_path: Path, tiny_cnn: TinyCNN) -> Path:
    path = tmp_path / "weights.pt"
    torch.save(tiny_cnn.state_dict(), path)
    return path


@pytest.fixture
def pickle_file(tmp_path: Path, tiny_cnn: TinyCNN) -> Path:
    path = tmp_path / "whole_model.pt"
    torch.save(tiny_cnn, path)
    return path


@pytest.fixture(autouse=True)
def _every_audit_reloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every audit a test runs must be consistent with itself (audit.results.inconsistencies), as
    `deepaudit report` and `deepaudit diff` require of the results.json they load."""
    import audit.compare
    import audit.runner
    from audit.results import AuditResult, inconsistencies

    real = audit.runner.audit_adapter

    def checked(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = real(*args, **kwargs)
        problems = inconsistencies(AuditResult.from_json(result.to_json()))
        assert not problems, f"the audit wrote an inconsistent result: {problems}"
        return result

    monkeypatch.setattr(audit.runner, "audit_adapter", checked)
    monkeypatch.setattr(audit.compare, "audit_adapter", checked)
