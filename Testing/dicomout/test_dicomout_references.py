"""DICOM SEG and RTSTRUCT reference exactly the images the scan was read from, slice for slice: in a folder
whose file names are shuffled against the slice order and that holds a second series of the same study.

Which image is slice k is worked out here with pydicom alone (sorted along the normal of its own
ImageOrientationPatient); the masks carry a different pattern on every slice, so a frame or contour shows
which mask slice it came from.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from SATSegmentLib.dicomout import read_source_series, write_dicom_seg, write_rtstruct
from SATSegmentLib.imageio import read_image

OTHER_SERIES_UID = "1.2.826.0.1.3680043.2.1125.77.9"
ROI = ["-30", "160", "-800", "30", "220", "-770"]  # RAS mm, as in test_dicomout_job


@pytest.fixture(scope="module")
def series_uid(ct_series) -> str:
    return str(pydicom.dcmread(next(ct_series.iterdir())).SeriesInstanceUID)


@pytest.fixture(scope="module")
def two_series(ct_series, tmp_path_factory) -> Path:
    """The CT series under shuffled names, beside a second series (other UIDs, every pixel + 5) named among them."""
    from pydicom.uid import generate_uid

    folder = tmp_path_factory.mktemp("shuffled") / "CT"
    folder.mkdir()
    files = sorted(ct_series.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    for rank, path in enumerate(files):
        dataset = pydicom.dcmread(path)
        dataset.save_as(folder / f"img{(7 * rank) % len(files):02d}a.dcm")  # 00, 07, 14, 01, 08, ...: not slice order
        dataset.decompress()
        dataset.PixelData = (dataset.pixel_array + 5).astype(dataset.pixel_array.dtype).tobytes()
        dataset.SeriesInstanceUID = OTHER_SERIES_UID
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[dataset.SOPInstanceUID])
        dataset.save_as(folder / f"img{(3 * rank) % len(files):02d}b.dcm")
    return folder


def images_in_slice_order(folder: Path, series_uid: str) -> list:
    """The headers (with pixels) of one series in `folder`, sorted along their slice normal: pydicom only."""
    datasets = [pydicom.dcmread(path) for path in sorted(folder.iterdir())]
    chosen = [d for d in datasets if d.SeriesInstanceUID == series_uid]
    normal = np.cross(*(np.array([float(v) for v in chosen[0].ImageOrientationPatient[i:i + 3]]) for i in (0, 3)))
    return sorted(chosen, key=lambda d: float(normal @ np.array([float(v) for v in d.ImagePositionPatient])))


def slice_patterns(shape: tuple[int, int, int]) -> np.ndarray:
    """A mask (z, y, x) whose slice k is a 10 x (k + 1) pixel rectangle: its size tells the slice."""
    mask = np.zeros(shape, np.uint8)
    for k in range(shape[0]):
        mask[k, 200:210, 200:201 + k] = 1
    return mask


def slice_of(pixels: np.ndarray) -> int:
    """The mask slice a frame or rasterised contour came from (see `slice_patterns`)."""
    count = int(np.count_nonzero(pixels))
    assert count % 10 == 0 and count > 0, count
    return count // 10 - 1


def seg_frames(path: Path) -> list[tuple[str, int]]:
    """(referenced SOP Instance UID, mask slice shown) of each frame of a DICOM SEG, in frame order."""
    import highdicom as hd

    seg = hd.seg.segread(path)
    return [(str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID), slice_of(frame))
            for item, frame in zip(seg.PerFrameFunctionalGroupsSequence, seg.pixel_array)]


def rtstruct_contours(path: Path, headers: dict, independent) -> tuple[list[str], list[tuple[str, int]]]:
    """The RTSTRUCT's referenced images in order, and (referenced SOP Instance UID, mask slice drawn) per contour."""
    rt = pydicom.dcmread(path)
    series = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    listed = [str(i.ReferencedSOPInstanceUID) for i in series.ContourImageSequence]
    drawn = []
    for contour in rt.ROIContourSequence[0].ContourSequence:
        uid = str(contour.ContourImageSequence[0].ReferencedSOPInstanceUID)
        points = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)
        drawn.append((uid, slice_of(independent.rasterise([points], headers[uid]))))
    return listed, drawn


def test_the_image_reader_stacks_the_chosen_series_in_slice_order(two_series, series_uid):
    expected = images_in_slice_order(two_series, series_uid)
    image, meta = read_image(two_series, series_uid=series_uid)
    volume = sitk.GetArrayFromImage(image)
    assert [pydicom.dcmread(f).SOPInstanceUID for f in meta["series_order"].files] == [d.SOPInstanceUID for d in expected]
    for k, dataset in enumerate(expected):  # slice k of the scan holds the pixels of the k-th image, not the other series'
        assert np.array_equal(volume[k], dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept))


def test_seg_and_rtstruct_reference_the_slices_the_scan_was_read_from(two_series, series_uid, tmp_path, independent):
    headers = {str(d.SOPInstanceUID): d for d in images_in_slice_order(two_series, series_uid)}
    expected = list(headers)
    image, meta = read_image(two_series, series_uid=series_uid)
    result = SimpleNamespace(masks={"liver": slice_patterns(sitk.GetArrayViewFromImage(image).shape)}, reference=image)
    source = read_source_series(meta["series_order"])
    assert [str(d.SOPInstanceUID) for d in source.instances] == expected

    frames = seg_frames(write_dicom_seg(tmp_path / "s.dcm", result, source))
    assert sorted(frames, key=lambda f: f[1]) == [(uid, k) for k, uid in enumerate(expected)]
    listed, drawn = rtstruct_contours(write_rtstruct(tmp_path / "r.dcm", result, source), headers, independent)
    assert listed == expected
    assert sorted(drawn, key=lambda c: c[1]) == [(uid, k) for k, uid in enumerate(expected)]


def test_a_job_writes_against_the_series_it_read(two_series, series_uid, tiny_model_dir, tmp_path, cli_job,
                                                 monkeypatch):
    """Through the command line: --series chooses the series, the DICOM outputs reference its images in order,
    and the folder is scanned and each header read by GDCM once (the DICOM outputs reuse the image read's order)."""
    from SATSegmentLib import dicomseries

    positions = {str(d.SOPInstanceUID): [float(v) for v in d.ImagePositionPatient]
                 for d in images_in_slice_order(two_series, series_uid)}
    expected = list(positions)
    calls = []

    def counted(name: str):
        original = getattr(dicomseries, name)

        def call(*args):
            calls.append((name, args[0]))
            return original(*args)
        return call

    for name in ("find_series", "read_slice_header"):
        monkeypatch.setattr(dicomseries, name, counted(name))
    out = tmp_path
    code, events = cli_job(["segment", two_series, "--series", series_uid, "-p", "liver", "--model", tiny_model_dir,
                            "--roi", *ROI, "--dicom-seg", out / "s.dcm", "--rtstruct", out / "r.dcm"])
    assert code == 0, events[-1]
    assert [e for e in events if e.get("event") == "warning"] == []
    assert [n for n, _ in calls].count("find_series") == 1
    headers_read = sorted(str(arg) for n, arg in calls if n == "read_slice_header")
    assert len(headers_read) == len(set(headers_read)) == len(expected)

    seg = pydicom.dcmread(out / "s.dcm")
    referenced = [str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    assert sorted(referenced) == sorted(expected) and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    for item in seg.PerFrameFunctionalGroupsSequence:  # each frame lies on the image it references
        uid = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        assert np.allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient], positions[uid])
    rt = pydicom.dcmread(out / "r.dcm")
    series = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert [str(i.ReferencedSOPInstanceUID) for i in series.ContourImageSequence] == expected
    assert series.SeriesInstanceUID == series_uid
