"""Fixtures shared by every test area: the read-only data in ../shared, a tiny random SAT model, small
synthetic scans and an isolated model cache."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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


# -- a real PACS: Debian's Orthanc with its DICOMweb plugin on 127.0.0.1 ----------------------------------

ORTHANC = ("Orthanc", "/usr/sbin/Orthanc")
ORTHANC_DICOMWEB = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so*")
PACS_CROP = 96  # pixels of each slice (rows and columns) of the example series put into a PACS


def _installed(candidates, what: str) -> str:
    for candidate in candidates:
        found = shutil.which(candidate) or next(iter(sorted(glob.glob(candidate))), None)
        if found:
            return found
    pytest.fail(f"{what} is missing: install Debian's orthanc and orthanc-dicomweb (bash Testing/install_system_tools.sh)")


class Orthanc:
    """Orthanc in `root` on 127.0.0.1 (no DICOM port, no remote access, no users), DICOMweb at `dicomweb`."""

    def __init__(self, root: Path) -> None:
        from SATSegmentLib.labelserver.testing import free_port

        binary, plugin = _installed(ORTHANC, "Orthanc"), _installed(ORTHANC_DICOMWEB, "Orthanc's DICOMweb plugin")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.dicomweb = f"{self.url}/dicom-web"
        config = {"Name": "SATSegmentTest", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
                  "HttpPort": int(self.url.rsplit(":", 1)[1]), "DicomServerEnabled": False, "RemoteAccessAllowed": False,
                  "AuthenticationEnabled": False, "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        (root / "orthanc.json").write_text(json.dumps(config))
        self.log_path = root / "orthanc.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.dicomweb}/studies", timeout=2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    pytest.fail(f"Orthanc did not start: {self.log_path.read_text(errors='replace')[-2000:]}")
                time.sleep(0.1)

    def upload(self, folder: Path) -> None:
        """Store every file of `folder` (Orthanc's REST API)."""
        for path in sorted(folder.iterdir()):
            request = urllib.request.Request(f"{self.url}/instances", path.read_bytes(), method="POST")
            urllib.request.urlopen(request, timeout=30).close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def series_with_uids(source: Path, target: Path) -> str:
    """Copy the example series with study, series and instance UIDs filled in (the shared copy has them emptied,
    and a PACS refuses instances without them), uncompressed (MONAI Label asks the PACS for uncompressed
    instances, and Debian's Orthanc cannot transcode the JPEG 2000 originals), cropped to the central
    `PACS_CROP`² pixels (position moved to match), so the tiny model runs in seconds. Returns the SeriesInstanceUID."""
    import pydicom
    from pydicom.uid import generate_uid

    target.mkdir()
    study, series = generate_uid(), generate_uid()
    for path in sorted(source.iterdir()):
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
        dataset.decompress()  # pydicom through Pillow's OpenJPEG
        first_row, first_column = (dataset.Rows - PACS_CROP) // 2, (dataset.Columns - PACS_CROP) // 2
        pixels = np.ascontiguousarray(dataset.pixel_array[first_row:first_row + PACS_CROP, first_column:first_column + PACS_CROP])
        along_row, along_column = np.array(dataset.ImageOrientationPatient[:3]), np.array(dataset.ImageOrientationPatient[3:])
        dataset.ImagePositionPatient = [float(v) for v in np.array(dataset.ImagePositionPatient, float)
                                        + first_row * float(dataset.PixelSpacing[0]) * along_column
                                        + first_column * float(dataset.PixelSpacing[1]) * along_row]
        dataset.Rows, dataset.Columns = pixels.shape
        dataset.PixelData = pixels.tobytes()
        dataset.save_as(target / path.name)
    return series


@contextmanager
def _pacs_label_server(root: Path, tiny_model_dir: Path, examples_dir: Path) -> Iterator[tuple]:
    """(server, SeriesInstanceUID, series folder, Orthanc): a SATSegment server with the tiny model whose datastore
    is an Orthanc holding the cropped example series; both stopped on leaving."""
    from SATSegmentLib.labelserver.testing import LabelServer, ServerStartError, server_python

    python = server_python()
    if python is None:
        pytest.fail("MONAI Label is not installed: run `bash .ci/server-env`.")
    series = series_with_uids(examples_dir / "example_ct_dicom", root / "series")
    orthanc = Orthanc(root)
    try:
        orthanc.upload(root / "series")
        server = LabelServer(python, root, orthanc.dicomweb, f"tiny={tiny_model_dir}")
    except ServerStartError as exc:
        orthanc.stop()
        pytest.fail(str(exc))
    try:
        yield server, series, root / "series", orthanc
    finally:
        server.stop()
        orthanc.stop()


@pytest.fixture(scope="session")
def pacs_starter():
    """`pacs_starter(folder)`: a running `Orthanc` whose files are in `folder`."""
    return Orthanc


@pytest.fixture(scope="session")
def pacs_label_server_starter():
    """`with pacs_label_server_starter(folder, tiny_model_dir, examples_dir) as (server, series_uid, series_dir, orthanc)`."""
    return _pacs_label_server
