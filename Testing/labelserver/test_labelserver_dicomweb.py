"""DICOMweb datastore: the server reads a series from a real Orthanc (Debian's, with its DICOMweb plugin) on
127.0.0.1 and segments it as the same series read from disk is segmented."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "SATSegment"))
from SATSegmentSlicerLib.remote import LabelServerClient, RemoteError  # noqa: E402

from SATSegmentLib.labelserver.testing import LabelServer, ServerStartError, free_port, server_python  # noqa: E402

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
CROP = 96  # pixels of each slice (rows and columns) sent to the PACS


def _with_uids(source: Path, target: Path) -> str:
    """Copy the example series with study, series and instance UIDs filled in (the shared copy has them emptied,
    and a PACS refuses instances without them), uncompressed: MONAI Label asks the PACS for uncompressed
    instances, and Debian's Orthanc cannot transcode the JPEG 2000 originals), cropped to the central `CROP`×`CROP`
    pixels (position moved to match), so the tiny model runs in seconds. Returns the SeriesInstanceUID."""
    import pydicom
    from pydicom.uid import generate_uid

    target.mkdir()
    study, series = generate_uid(), generate_uid()
    for path in sorted(source.iterdir()):
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
        dataset.decompress()  # pydicom through Pillow's OpenJPEG
        first_row, first_column = (dataset.Rows - CROP) // 2, (dataset.Columns - CROP) // 2
        pixels = np.ascontiguousarray(dataset.pixel_array[first_row:first_row + CROP, first_column:first_column + CROP])
        along_row, along_column = np.array(dataset.ImageOrientationPatient[:3]), np.array(dataset.ImageOrientationPatient[3:])
        dataset.ImagePositionPatient = [float(v) for v in np.array(dataset.ImagePositionPatient, float)
                                        + first_row * float(dataset.PixelSpacing[0]) * along_column
                                        + first_column * float(dataset.PixelSpacing[1]) * along_row]
        dataset.Rows, dataset.Columns = pixels.shape
        dataset.PixelData = pixels.tobytes()
        dataset.save_as(target / path.name)
    return series


class Orthanc:
    """Orthanc on 127.0.0.1 (no DICOM port, no remote access), with DICOMweb at /dicom-web."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        config = {"Name": "satsegment-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
                  "HttpPort": self.port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
                  "AuthenticationEnabled": False, "Plugins": [str(DICOMWEB_PLUGIN)],
                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        (root / "orthanc.json").write_text(json.dumps(config))
        self.log = open(root / "orthanc.log", "wb")
        self.process = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/system", timeout=2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    pytest.fail(f"Orthanc did not start: {(root / 'orthanc.log').read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)

    def upload(self, folder: Path) -> None:
        for path in sorted(folder.iterdir()):
            request = urllib.request.Request(f"{self.url}/instances", path.read_bytes(), method="POST")
            urllib.request.urlopen(request, timeout=30).close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


@pytest.fixture(scope="module")
def dicomweb_server(tmp_path_factory, tiny_model_dir, examples_dir):
    if not (Path(ORTHANC).exists() and DICOMWEB_PLUGIN.exists()):
        pytest.fail("Orthanc with its DICOMweb plugin is needed: apt-get install orthanc orthanc-dicomweb")
    python = server_python()
    if python is None:
        pytest.fail("MONAI Label is not installed: run `bash .ci/server-env`.")
    root = tmp_path_factory.mktemp("dicomweb")
    series_dir = root / "series"
    series = _with_uids(examples_dir / "example_ct_dicom", series_dir)
    orthanc = Orthanc(root)
    orthanc.upload(series_dir)
    try:
        server = LabelServer(python, root, f"{orthanc.url}/dicom-web", f"tiny={tiny_model_dir}")
    except ServerStartError as exc:
        orthanc.stop()
        pytest.fail(str(exc))
    yield server, series, series_dir
    server.stop()
    orthanc.stop()


def test_the_server_tells_whether_the_pacs_holds_a_series_without_fetching_it(dicomweb_server):
    server, series, series_dir = dicomweb_server
    def fetched() -> list[Path]:  # MONAI Label's cache of retrieved instances, and the test's own series folder
        return sorted(server.root.rglob("*.dcm"))

    before = fetched()
    client = LabelServerClient(server.url, timeout=60)
    assert client.image_info(series) == {"image_id": series, "datastore": "dicomweb", "exists": True,
                                         "instances": len(list(series_dir.iterdir()))}
    assert client.image_info("1.2.3.4.5") == {"image_id": "1.2.3.4.5", "datastore": "dicomweb", "exists": False}
    assert fetched() == before  # first in this module: nothing of the series was retrieved


def test_a_series_from_the_pacs_is_segmented_like_the_same_files_on_disk(dicomweb_server, engine, tmp_path):
    server, series, series_dir = dicomweb_server
    remote = LabelServerClient(server.url, timeout=300).segment(["liver", "spleen"], "ct", image_id=series)
    local_path, local = engine.infer({"prompts": ["liver", "spleen"], "modality": "ct"}, str(series_dir))
    assert remote.label_names == local["label_names"] == {"liver": 1, "spleen": 2}
    remote_image, local_image = sitk.ReadImage(str(remote.save(tmp_path))), sitk.ReadImage(local_path)
    assert remote_image.GetSize() == local_image.GetSize()
    assert np.allclose(remote_image.GetOrigin(), local_image.GetOrigin(), atol=1e-3)
    assert np.allclose(remote_image.GetDirection(), local_image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(remote_image), sitk.GetArrayFromImage(local_image))


def test_an_unknown_series_uid_is_not_found(dicomweb_server):
    server, _, _ = dicomweb_server
    with pytest.raises(RemoteError, match="has no image") as caught:
        LabelServerClient(server.url, timeout=300).segment(["liver"], "ct", image_id="1.2.3.4.5")
    assert caught.value.status == 404
