"""The real DICOM CT series as a planning CT would arrive (its UIDs restored), and real organ masks on it.

The shared series was anonymised with its Study, Series and SOP Instance UIDs emptied (the SOP Instance UIDs
survive in the file meta information); DICOM SEG and RTSTRUCT must reference them, so a copy gets them back,
plus a patient name and ID to check that they are copied. Pixel data and geometry stay untouched. The masks
are TotalSegmentator's labels of that series (example_seg_dicom.nii.gz), named with SAT terms.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

STUDY_UID = "1.2.826.0.1.3680043.2.1125.77.1"
SERIES_UID = "1.2.826.0.1.3680043.2.1125.77.2"
PATIENT = {"PatientName": "Test^Planning", "PatientID": "SAT-0042", "PatientBirthDate": "19600101", "PatientSex": "F"}
#: TotalSegmentator label -> SAT term: large and small organs, vessels, a bone and a rib of ~100 voxels.
LABELS = {1: "spleen", 5: "liver", 7: "pancreas", 8: "right adrenal gland", 52: "aorta", 63: "inferior vena cava",
          79: "spinal cord", 32: "thoracic vertebrae 12 (t12)", 115: "rib"}


def restore_uids(source: Path, folder: Path, study_uid: str = STUDY_UID, series_uid: str = SERIES_UID) -> Path:
    """Copy the series' files to `folder` with Study/Series/SOP UIDs and patient attributes filled in."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
        dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID
        dataset.SeriesNumber = 3
        for keyword, value in PATIENT.items():
            setattr(dataset, keyword, value)
        dataset.save_as(folder / path.name)
    return folder


@pytest.fixture(scope="session")
def cli_job(tmp_path_factory):
    """Runs `satsegment ARGV --progress json` with an empty home and no network; returns (exit code, events)."""
    from SATSegmentLib.cli import main

    def run(argv: list) -> tuple[int, list[dict]]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SATSEGMENT_HOME", str(tmp_path_factory.mktemp("home")))
            patch.setenv("SATSEGMENT_MODEL_URL_BASE", "http://127.0.0.1:9")
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                code = main([str(a) for a in [*argv, "--progress", "json"]])
        return code, [json.loads(line) for line in stdout.getvalue().splitlines() if line.strip()]

    return run


@pytest.fixture(scope="session")
def ct_series(examples_dir, tmp_path_factory) -> Path:
    """A folder with the real 20-slice CT series, UIDs restored (read-only by convention)."""
    return restore_uids(examples_dir / "example_ct_dicom", tmp_path_factory.mktemp("planning-ct") / "CT")


@pytest.fixture(scope="session")
def label_map(examples_dir) -> nib.Nifti1Image:
    """TotalSegmentator's labels of the series (x, y, z with a RAS affine)."""
    return nib.load(str(examples_dir / "example_seg_dicom.nii.gz"))


@pytest.fixture(scope="session")
def organ_result(ct_series, label_map):
    """A result as the pipeline returns it (masks z, y, x on the scan read by imageio) holding the real organs."""
    import SimpleITK as sitk

    from SATSegmentLib.imageio import read_image

    reference, _ = read_image(ct_series)
    labels = np.asarray(label_map.dataobj)
    # the label map's voxel (i, j, k) at its affine, resampled onto the reference by nearest neighbour; both
    # are the same grid, so this is a pure reordering and is checked to lose no voxel
    labels_image = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)).astype(np.uint8))
    ras = label_map.affine
    lps = np.diag([-1, -1, 1]) @ ras[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    labels_image.SetSpacing(spacing.tolist())
    labels_image.SetDirection((lps / spacing).ravel().tolist())
    labels_image.SetOrigin((np.diag([-1, -1, 1]) @ ras[:3, 3]).tolist())
    on_reference = sitk.GetArrayFromImage(sitk.Resample(labels_image, reference, sitk.Transform(), sitk.sitkNearestNeighbor))
    masks = {term: (on_reference == label).astype(np.uint8) for label, term in LABELS.items()}
    for label, term in LABELS.items():
        assert masks[term].sum() == (labels == label).sum() > 0, term
    return SimpleNamespace(masks=masks, reference=reference)


# ---- independent readers: pydicom headers, nibabel's affine and scikit-image, never SATSegmentLib ------------

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def source_headers(folder: Path) -> dict:
    """SOP Instance UID -> header of each image of the series in `folder`."""
    import pydicom

    headers = (pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(folder.iterdir()))
    return {str(h.SOPInstanceUID): h for h in headers}


def pixel_centres(header) -> np.ndarray:
    """LPS millimetres of every pixel centre of an image, (rows, columns, 3), from its own header."""
    row_dir, col_dir = (np.array([float(v) for v in header.ImageOrientationPatient[i:i + 3]]) for i in (0, 3))
    row_spacing, col_spacing = (float(v) for v in header.PixelSpacing)
    r, c = np.mgrid[0:int(header.Rows), 0:int(header.Columns)]
    origin = np.array([float(v) for v in header.ImagePositionPatient])
    return origin + c[..., None] * col_spacing * row_dir + r[..., None] * row_spacing * col_dir


def volume_on_image(volume: nib.Nifti1Image, header, data: np.ndarray | None = None) -> np.ndarray:
    """The NIfTI voxels lying at the image's pixel centres, (rows, columns): nibabel's affine against the image's
    ImagePositionPatient/Orientation and PixelSpacing. Every centre must hit a voxel centre."""
    data = np.asarray(volume.dataobj) if data is None else data
    ras = pixel_centres(header) @ LPS_TO_RAS.T
    index = np.einsum("ij,rcj->rci", np.linalg.inv(volume.affine)[:3, :3], ras) + np.linalg.inv(volume.affine)[:3, 3]
    voxel = np.round(index).astype(int)
    assert np.abs(index - voxel).max() < 1e-3, "the image's pixels are not on the NIfTI's voxel centres"
    assert (voxel >= 0).all() and (voxel < data.shape[:3]).all(), "the image lies outside the NIfTI volume"
    return data[voxel[..., 0], voxel[..., 1], voxel[..., 2]]


def contour_pixels(points_mm: np.ndarray, header) -> np.ndarray:
    """(row, column) pixel coordinates of LPS points on the image plane (checked to lie on it)."""
    row_dir, col_dir = (np.array([float(v) for v in header.ImageOrientationPatient[i:i + 3]]) for i in (0, 3))
    row_spacing, col_spacing = (float(v) for v in header.PixelSpacing)
    offset = points_mm - np.array([float(v) for v in header.ImagePositionPatient])
    assert np.abs(offset @ np.cross(row_dir, col_dir)).max() < 1e-2, "a contour lies off its image's plane"
    return np.stack([offset @ col_dir / row_spacing, offset @ row_dir / col_spacing], axis=1)


def rasterise(contours: list[np.ndarray], header) -> np.ndarray:
    """Pixels of an image inside its contours (LPS points), holes by the even-odd rule (scikit-image)."""
    from skimage.draw import polygon2mask

    shape = (int(header.Rows), int(header.Columns))
    mask = np.zeros(shape, bool)
    for points in contours:
        mask ^= polygon2mask(shape, contour_pixels(points, header))
    return mask


@pytest.fixture(scope="session")
def independent():
    """The independent readers above, for the tests."""
    return SimpleNamespace(source_headers=source_headers, volume_on_image=volume_on_image, rasterise=rasterise,
                           contour_pixels=contour_pixels)
