"""`.seg.nrrd` and NIfTI outputs: geometry in LPS, segment metadata, overlap layers, atomic writes."""

from __future__ import annotations

import os

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from SATSegmentLib import outputs
from SATSegmentLib.errors import InputError

TERMINOLOGY = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
               "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")


def _oblique_reference() -> sitk.Image:
    image = sitk.Image(6, 5, 4, sitk.sitkInt16)  # x=6, y=5, z=4
    image.SetSpacing((0.8, 1.2, 3.0))
    image.SetOrigin((-10.0, 20.0, 5.0))
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    return image


def _masks():
    liver = np.zeros((4, 5, 6), np.uint8)
    liver[1:3, 1:4, 2:5] = 1
    tumour = np.zeros_like(liver)
    tumour[2, 2, 3] = 1  # inside the liver: overlap
    empty = np.zeros_like(liver)
    return {"liver": liver, "liver tumor": tumour, "spleen": empty}


def _specs():
    return [
        outputs.SegmentSpec("liver", "liver", "Liver", (0.86, 0.38, 0.27), TERMINOLOGY, outputs.provenance_tags("Liver", "liver", "tiny")),
        outputs.SegmentSpec("liver tumor", "liver tumor", "liver tumour|x", tags=outputs.provenance_tags("liver tumour|x\n", "liver tumor", "tiny")),
        outputs.SegmentSpec("spleen", "spleen", "spleen"),
    ]


def test_seg_nrrd_round_trip_geometry_metadata_and_overlap(tmp_path):
    reference = _oblique_reference()
    path = outputs.write_seg_nrrd(tmp_path / "out.seg.nrrd", _masks(), reference, _specs())
    seg = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in seg["segments"]] == ["liver", "liver tumor", "spleen"]
    assert seg["voxels"].ndim == 4  # overlapping liver and tumour need two layers
    for name, mask in _masks().items():
        np.testing.assert_array_equal(slicerio.segment_mask(seg, name), mask.transpose(2, 1, 0) > 0)
    liver = slicerio.segment_from_name(seg, "liver")
    assert liver["terminology"]["type"][1] == "10200004"
    assert liver["color"] == pytest.approx([0.86, 0.38, 0.27])
    assert liver["tags"]["SATSegment.Prompt"] == "Liver"
    assert slicerio.segment_from_name(seg, "liver tumor")["tags"]["SATSegment.Prompt"] == "liver tumour x"
    assert "terminology" not in slicerio.segment_from_name(seg, "spleen")
    # geometry: pynrrd header is LPS; SimpleITK's physical point of voxel (i,j,k) must match
    _, header = nrrd.read(str(path))
    assert header["space"] == "left-posterior-superior"
    directions = header["space directions"][1:]  # first row is the 'list' axis
    index = np.array([2, 3, 1])
    physical = header["space origin"] + index @ directions
    np.testing.assert_allclose(physical, reference.TransformIndexToPhysicalPoint([2, 3, 1]), atol=1e-6)


def test_nifti_mask_keeps_reference_geometry(tmp_path):
    reference = _oblique_reference()
    path = outputs.write_nifti_mask(tmp_path / outputs.split_file_name("left kidney"), _masks()["liver"], reference)
    assert path.name == "left_kidney.nii.gz"
    image = sitk.ReadImage(str(path))
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), _masks()["liver"])


def test_staged_outputs_commit_and_discard(tmp_path):
    final = tmp_path / "a.seg.nrrd"
    with outputs.StagedOutputs(overwrite=False) as staged:
        temp = staged.temp_path(final)
        assert temp.name.endswith(".seg.nrrd") and temp.parent == tmp_path
        temp.write_text("x")
        raise_later = True
    assert not final.exists() and list(tmp_path.iterdir()) == []  # left the block without commit
    with outputs.StagedOutputs(overwrite=False) as staged:
        staged.temp_path(final).write_text("y")
        staged.commit()
    assert final.read_text() == "y" and list(tmp_path.iterdir()) == [final]
    assert raise_later


def test_check_output_path_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        outputs.check_output_path(tmp_path / "missing" / "x.seg.nrrd", overwrite=False)
    with pytest.raises(InputError, match="must end with .seg.nrrd"):
        outputs.check_output_path(tmp_path / "x.nrrd", overwrite=False)
    existing = tmp_path / "x.seg.nrrd"
    existing.write_text("keep")
    with pytest.raises(InputError, match="already exists") as info:
        outputs.check_output_path(existing, overwrite=False)
    assert "--overwrite" in info.value.hint
    assert outputs.check_output_path(existing, overwrite=True) == existing


def test_read_only_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: make the write probe fail the way it does for users
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(outputs.tempfile, "TemporaryFile", refuse)
    try:
        with pytest.raises(InputError, match="Cannot write.*Permission denied"):
            outputs.check_output_path(folder / "x.seg.nrrd", overwrite=False)
    finally:
        folder.chmod(0o700)
