"""Writing outputs when things go wrong: a full disk, Unicode names, the umask, stale temporary
files, folders a failed run created, and outputs that would replace the input scan."""

from __future__ import annotations

import os
import subprocess
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from SATSegmentLib import outputs
from SATSegmentLib.errors import InputError

SHAPE = (4, 5, 6)  # z, y, x


def _reference() -> sitk.Image:
    image = sitk.Image(*reversed(SHAPE), sitk.sitkInt16)
    image.SetSpacing((0.8, 1.2, 3.0))
    return image


def _mask(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(SHAPE) > 0.5).astype(np.uint8)


def _write(output: Path, split: dict[str, Path] | None = None, prompt: str = "liver", term: str = "liver",
           model: str = "tiny") -> dict:
    spec = outputs.SegmentSpec(term, term, prompt, tags=outputs.provenance_tags(prompt, term, model))
    return outputs.write_job_outputs(output, split or {}, {term: _mask()}, _reference(), [spec], overwrite=False)


@contextmanager
def _full_disk(folder: Path) -> Iterator[Path]:
    """A 64 kB tmpfs on `folder`, filled up (root only; the test is skipped otherwise)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True,
                             text=True) if shutil.which("mount") and os.geteuid() == 0 else None
    if mounted is None or mounted.returncode:
        pytest.skip(f"needs `mount -t tmpfs` as root: {mounted.stderr.strip() if mounted else 'not root'}")
    try:
        with open(folder / "filler", "wb", buffering=0) as filler, pytest.raises(OSError):
            while True:
                filler.write(bytes(4096))
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    with _full_disk(tmp_path / "full") as disk:
        yield disk


# ---- a full disk -------------------------------------------------------------------------------

def test_full_disk_under_the_split_masks_is_an_error_not_a_truncated_file(tmp_path, full_disk):
    """ITK's NIfTI writer only prints 'wrote only 0 of N bytes' and the truncated file was renamed into place."""
    output = tmp_path / "r.seg.nrrd"
    with pytest.raises(InputError, match=r"Not enough space to write .*liver\.nii\.gz"):
        _write(output, {"liver": full_disk / "split" / "liver.nii.gz"})
    assert not output.exists()
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no temporary file, no split folder


# ---- Unicode in segment names and tags ----------------------------------------------------------

def test_unicode_names_and_tags_are_utf8_in_the_header(tmp_path):
    path = tmp_path / "r.seg.nrrd"
    _write(path, prompt="肝臓 \\n", term="肝臓", model="model folder modèle")
    header = path.read_bytes().split(b"\n\n", 1)[0].decode("utf-8")
    assert "Segment0_Name:=肝臓\n" in header
    assert "SATSegment.Prompt:肝臓 \\\\n|" in header  # NRRD escapes a backslash as two
    assert "SATSegment.Model:model folder modèle|" in header
    seg = slicerio.read_segmentation(str(path))  # pynrrd drops non-ASCII header bytes, but reads the file
    np.testing.assert_array_equal(seg["voxels"], _mask().transpose(2, 1, 0))


def test_unicode_names_and_tags_read_back_in_slicer(tmp_path):
    slicer = pytest.importorskip("slicer", reason="the slicer-core wheel provides Slicer's segmentation reader")
    vtk = pytest.importorskip("vtk")
    path = tmp_path / "r.seg.nrrd"
    _write(path, prompt="肝臓 \\n", term="肝臓", model="model folder modèle")
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    segment = node.GetSegmentation().GetNthSegment(0)
    assert segment.GetName() == "肝臓"
    tags = {name: vtk.reference("") for name in ("SATSegment.Prompt", "SATSegment.Model")}
    assert all(segment.GetTag(name, value) for name, value in tags.items())
    assert {name: str(value) for name, value in tags.items()} == {"SATSegment.Prompt": "肝臓 \\n",
                                                                   "SATSegment.Model": "model folder modèle"}


@pytest.mark.parametrize("name, expected", [("肝臓", "肝臓.nii.gz"), ("foie droit é", "foie_droit_é.nii.gz"),
                                            (".", "segment.nii.gz"), ("../liver", "liver.nii.gz")])
def test_split_file_names_keep_letters_of_any_script_and_are_never_empty(name, expected):
    assert outputs.split_file_name(name) == expected


def test_split_file_name_fits_the_file_name_limit():
    assert len(outputs.split_file_name("肝" * 200).encode()) <= outputs.MAX_SPLIT_STEM_BYTES + len(".nii.gz")


def test_split_file_names_differ_on_case_insensitive_disks(tmp_path):
    paths = outputs.split_paths(str(tmp_path), {"a": "Liver x", "b": "liver_x"}, overwrite=False)
    assert [p.name for p in paths.values()] == ["Liver_x.nii.gz", "liver_x_2.nii.gz"]


# ---- permissions -------------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_get_the_permissions_of_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        _write(tmp_path / "r.seg.nrrd", {"liver": tmp_path / "liver.nii.gz"})
    finally:
        os.umask(previous)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {"r.seg.nrrd": mode, "liver.nii.gz": mode}


# ---- temporary files and folders ---------------------------------------------------------------

def _temp_file(folder: Path, name: str, age: float) -> Path:
    path = folder / name
    path.write_bytes(b"partial")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_stale_temp_file_of_a_killed_run_is_removed(tmp_path):
    _temp_file(tmp_path, ".r.seg.nrrd.k3_x9q2a.partial.seg.nrrd", age=outputs.STALE_TEMP_SECONDS + 60)
    _write(tmp_path / "r.seg.nrrd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.seg.nrrd"]


def test_recent_or_foreign_temp_like_files_are_kept(tmp_path):
    old = outputs.STALE_TEMP_SECONDS + 60
    kept = [_temp_file(tmp_path, ".r.seg.nrrd.0a1b2c3d.partial.seg.nrrd", age=60),  # another run is writing it
            _temp_file(tmp_path, ".r.seg.nrrd.notes", age=old),
            _temp_file(tmp_path, ".x.seg.nrrd.0a1b2c3d.partial.seg.nrrd", age=old)]
    _write(tmp_path / "r.seg.nrrd")
    assert all(path.exists() for path in kept)


def test_folder_created_for_the_outputs_is_removed_when_they_fail(tmp_path):
    with pytest.raises(RuntimeError), outputs.StagedOutputs(overwrite=False) as staged:
        staged.temp_path(tmp_path / "split" / "liver.nii.gz")
        raise RuntimeError("the job failed while writing")
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_kept_when_the_outputs_fail(tmp_path):
    (tmp_path / "split").mkdir()
    with pytest.raises(RuntimeError), outputs.StagedOutputs(overwrite=False) as staged:
        staged.temp_path(tmp_path / "split" / "liver.nii.gz")
        raise RuntimeError("the job failed while writing")
    assert list((tmp_path / "split").iterdir()) == []


def test_missing_split_folder_is_checked_but_not_created(tmp_path):
    assert outputs.check_output_dir(tmp_path / "split", create=True) == tmp_path / "split"
    assert list(tmp_path.iterdir()) == []


# ---- the input scan is never an output ---------------------------------------------------------

def _same_file_spellings(scan: Path) -> dict[str, Path]:
    (scan.parent / "sub").mkdir()
    (scan.parent / "link.seg.nrrd").symlink_to(scan)
    os.link(scan, scan.parent / "hard.seg.nrrd")
    return {"same": scan, "dotdot": scan.parent / "sub" / ".." / scan.name,
            "symlink": scan.parent / "link.seg.nrrd", "hardlink": scan.parent / "hard.seg.nrrd"}


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_output_that_is_the_input_scan_is_refused_even_with_overwrite(tmp_path, spelling):
    scan = tmp_path / "scan.seg.nrrd"
    scan.write_bytes(b"the scan")
    with pytest.raises(InputError, match="would replace the scan"):
        outputs.check_output_path(_same_file_spellings(scan)[spelling], overwrite=True, protect=(scan,))


def test_split_file_that_is_the_input_scan_is_refused_even_with_overwrite(tmp_path):
    scan = tmp_path / "liver.nii.gz"
    scan.write_bytes(b"the scan")
    with pytest.raises(InputError, match="would replace the scan"):
        outputs.split_paths(str(tmp_path), {"liver": "liver"}, overwrite=True, protect=(str(scan),))
