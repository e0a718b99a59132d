"""DICOM SEG and RTSTRUCT go into a real DICOM server and come back unchanged: Debian's Orthanc with its
DICOMweb plugin, started here on 127.0.0.1 (remote access off, DICOM port off), storage in a temporary
folder; STOW-RS in, WADO-RS and QIDO-RS out, with dicomweb-client."""

from __future__ import annotations

import glob
import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pydicom
import pytest

from SATSegmentLib.dicomout import write_dicom_seg, write_rtstruct

ORTHANC = ("Orthanc", "/usr/sbin/Orthanc")
PLUGINS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so*")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find(candidates, what: str) -> str:
    for candidate in candidates:
        found = shutil.which(candidate) or next(iter(sorted(glob.glob(candidate))), None)
        if found:
            return found
    pytest.fail(f"{what} is missing: install Debian's orthanc and orthanc-dicomweb (bash Testing/install_system_tools.sh)")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """The DICOMweb root URL of a fresh Orthanc on 127.0.0.1, stopped after the module."""
    binary, plugin = _find(ORTHANC, "Orthanc"), _find(PLUGINS, "Orthanc's DICOMweb plugin")
    folder = tmp_path_factory.mktemp("orthanc")
    port = _free_port()
    config = {"Name": "SATSegmentTest", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
              "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("w")
    server = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/dicom-web/studies", timeout=1):
                    break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"Orthanc stopped: {(folder / 'orthanc.log').read_text()[-2000:]}")
                time.sleep(0.1)
        else:
            pytest.fail(f"Orthanc did not answer: {(folder / 'orthanc.log').read_text()[-2000:]}")
        yield f"{base}/dicom-web"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_seg_and_rtstruct_are_stored_and_retrieved_unchanged(orthanc, organ_result, ct_series, tmp_path):
    from dicomweb_client.api import DICOMwebClient

    files = [write_dicom_seg(tmp_path / "organs.seg.dcm", organ_result, ct_series),
             write_rtstruct(tmp_path / "organs.rtstruct.dcm", organ_result, ct_series, names="tg263")]
    written = [pydicom.dcmread(path) for path in files]
    client = DICOMwebClient(url=orthanc)
    client.store_instances(datasets=written)
    found = client.search_for_instances(study_instance_uid=written[0].StudyInstanceUID)
    assert {item["00080018"]["Value"][0] for item in found} == {d.SOPInstanceUID for d in written}
    for dataset in written:
        back = client.retrieve_instance(dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID,
                                        media_types=(("application/dicom", "*"),))
        assert back.SOPClassUID == dataset.SOPClassUID
        assert back == dataset  # every data element, pixel data and contour data included
