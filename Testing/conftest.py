"""Fixtures shared by every test area: the read-only data in ../shared and a tiny random SAT model."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EXAMPLES = SHARED / "data" / "totalsegmentator-examples"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"test data folder {SHARED} is missing: clone the repository next to shared/")
    return SHARED


@pytest.fixture(scope="session")
def examples_dir(shared_dir: Path) -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny SAT model folder (random weights, official checkpoint layout)."""
    from SATSegmentLib.model import SATConfig
    from SATSegmentLib.model.testing import write_random_model_folder

    folder = tmp_path_factory.mktemp("tiny-model")
    write_random_model_folder(folder, SATConfig.tiny(), seed=0)
    return folder
