"""DICOM SEG and RTSTRUCT go into a real DICOM server and come back unchanged: Debian's Orthanc with its
DICOMweb plugin, started here on 127.0.0.1 (remote access off, DICOM port off), storage in a temporary
folder; STOW-RS in, WADO-RS and QIDO-RS out, with dicomweb-client."""

from __future__ import annotations


import pydicom
import pytest

from SATSegmentLib.dicomout import write_dicom_seg, write_rtstruct

@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, pacs_starter):
    """The DICOMweb root URL of a fresh Orthanc on 127.0.0.1, stopped after the module."""
    server = pacs_starter(tmp_path_factory.mktemp("orthanc"))
    yield server.dicomweb
    server.stop()


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
