"""Shared pytest configuration: where the reference fixtures live, CPU determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference_fixtures import REPO_ROOT, reference_fixture_dir

SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    path = reference_fixture_dir()
    if not path.is_dir():
        pytest.fail(
            f"reference fixture directory {path} does not exist; set LAGERNVS_REFERENCE_FIXTURES "
            "to the folder holding the reference *.json/*.safetensors cases"
        )
    return path


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    path = SHARED_DIR / "data"
    if not path.is_dir():
        pytest.fail(f"shared data directory {path} is missing (expected ../shared/data)")
    return path


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache: the folder where pretrained weight files would be looked up."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path / "hub" / "checkpoints"


@pytest.fixture(autouse=True)
def _cpu_float32_determinism():
    torch.manual_seed(0)
    yield
