"""Fixtures shared by every test area: the read-only data in ../shared, a tiny random SAT model, small
synthetic scans and an isolated model cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

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


def write_volume(path: Path, array: np.ndarray, spacing=(1.5, 1.5, 3.0), origin=(-40.0, 30.0, -20.0)) -> Path:
    """Write a (z, y, x) array as an image with an LPS geometry (oblique-free)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def ct_like(shape=(16, 48, 56), seed: int = 0) -> np.ndarray:
    """Air around a soft-tissue body with a bright 'bone' blob, in Hounsfield units."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    array = np.full(shape, -1000.0, np.float32)
    body = ((y - shape[1] / 2) ** 2 / (shape[1] / 2.4) ** 2 + (x - shape[2] / 2) ** 2 / (shape[2] / 2.4) ** 2) < 1
    array[body] = 40.0
    array[body & (np.abs(x - shape[2] / 2) < 3) & (y > shape[1] / 2)] = 700.0
    return (array + rng.normal(0, 10, shape)).astype(np.int16)


@pytest.fixture
def volume_writer():
    """`write_volume` and `ct_like` for tests that build their own scans."""
    return write_volume, ct_like


@pytest.fixture
def ct_path(tmp_path) -> Path:
    return write_volume(tmp_path / "ct.nii.gz", ct_like())


@pytest.fixture
def mr_path(tmp_path) -> Path:
    array = (ct_like() + 1000).clip(0, 1500).astype(np.int16)  # positive, MR-like intensities
    return write_volume(tmp_path / "mr.nii.gz", array)


@pytest.fixture
def out_dir(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def isolated_model_home(tmp_path, monkeypatch) -> Path:
    """Never touch (or download into) the user's real model cache."""
    home = tmp_path / "satsegment-home"
    monkeypatch.setenv("SATSEGMENT_HOME", str(home))
    monkeypatch.setenv("SATSEGMENT_MODEL_URL_BASE", "http://127.0.0.1:9")  # discard port: never the internet
    return home
