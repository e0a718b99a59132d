"""Every kind of bad input gets a clear InputError; good inputs come back as float32 3D volumes."""

import gzip
import multiprocessing
import os
import shutil
import time

import numpy as np
import pytest
import SimpleITK as sitk

from SATSegmentLib.errors import InputError
from SATSegmentLib.imageio import read_image, validate_image


def volume(array=None, spacing=(1.0, 1.0, 2.0)):
    image = sitk.GetImageFromArray(np.ones((4, 5, 6), np.int16) if array is None else array)
    image.SetSpacing(spacing)
    return image


def write(tmp_path, image, name):
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nrrd", "v.mha"])
def test_formats_read_as_float32(tmp_path, name):
    image, meta = read_image(write(tmp_path, volume(), name))
    assert image.GetPixelID() == sitk.sitkFloat32 and image.GetSize() == (6, 5, 4)
    assert meta["ras_affine"].shape == (4, 4) and len(meta["identity"]) == 32


def test_dicom_series_metadata(examples_dir):
    image, meta = read_image(examples_dir / "example_ct_dicom")
    assert meta["format"] == "dicom" and meta["modality"] == "CT" and image.GetSize() == (512, 512, 20)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.nii.gz", "not found"),
    (lambda p: _text(p / "broken.nii.gz", b"not gzip at all"), "Cannot read"),
    (lambda p: _truncated(p), "truncated"),
    (lambda p: _text(p / "cut.nii.gz", (p / "full.nii.gz").read_bytes()[:900]), "truncated"),
    (lambda p: _text(p / "cut.nii", (p / "full.nii").read_bytes()[:5000]), "truncated"),
    (lambda p: _text(p / "notes.txt", b"hello"), "Cannot read"),
    (lambda p: p, "No DICOM series"),
])
def test_unreadable_inputs(tmp_path, make, message):
    for name in ("full.nii.gz", "full.nii"):
        write(tmp_path, volume(np.random.default_rng(0).normal(size=(20, 30, 40)).astype(np.float32)), name)
    (tmp_path / "stray.txt").write_text("not dicom")
    with pytest.raises(InputError, match=message) as info:
        read_image(make(tmp_path))
    assert info.value.hint


def _text(path, data):
    path.write_bytes(data)
    return path


def _truncated(tmp_path):
    raw = gzip.decompress((tmp_path / "full.nii.gz").read_bytes())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    return cut


@pytest.mark.parametrize("image, message", [
    (sitk.Image(8, 8, sitk.sitkFloat32), "2D image"),
    (sitk.Image([4, 4, 4, 3], sitk.sitkFloat32), "4D image"),
    (sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3), "components"),
    (sitk.Image([4, 4, 1], sitk.sitkFloat32), "single slice"),
    (volume(np.full((4, 5, 6), np.nan, np.float32)), "NaN"),
    (volume(np.where(np.arange(120).reshape(4, 5, 6) == 7, np.inf, 0).astype(np.float32)), "NaN or infinite"),
    (volume(spacing=(1.0, 1.0, 80.0)), "implausible voxel spacing"),
    (volume(spacing=(0.001, 1.0, 1.0)), "implausible voxel spacing"),
])
def test_invalid_volumes(image, message):
    with pytest.raises(InputError, match=message):
        validate_image(image)


def test_zero_and_non_finite_spacing_in_a_header(tmp_path):
    path = write(tmp_path, volume(), "v.nrrd")
    header = path.read_bytes()
    for bad in (b"(0,0,0)", b"(nan,0,0)", b"(-1e-9,0,0)"):
        (tmp_path / "bad.nrrd").write_bytes(header.replace(b"(1,0,0)", bad, 1))
        with pytest.raises(InputError) as info:
            read_image(tmp_path / "bad.nrrd")
        assert info.value.hint


def test_identity_follows_content_not_path(tmp_path, examples_dir):
    """The Slicer module exports the volume to a new temporary file per run: the caches must still hit."""

    source = examples_dir / "example_ct_sm.nii.gz"
    first = shutil.copy(source, tmp_path / "a.nii.gz")
    time.sleep(0.01)
    second = shutil.copy(source, tmp_path / "b.nii.gz")
    assert read_image(first)[1]["identity"] == read_image(second)[1]["identity"]
    image = sitk.ReadImage(str(source))
    image[10, 10, 5] = image[10, 10, 5] + 1
    sitk.WriteImage(image, str(tmp_path / "c.nii.gz"))
    assert read_image(tmp_path / "c.nii.gz")[1]["identity"] != read_image(first)[1]["identity"]
    image = sitk.ReadImage(str(source))
    image.SetOrigin((1.0, 2.0, 3.0))
    sitk.WriteImage(image, str(tmp_path / "d.nii.gz"))
    assert read_image(tmp_path / "d.nii.gz")[1]["identity"] != read_image(first)[1]["identity"]


def _error_within(seconds, call):
    """(type name, message) of what `call` raises, run in a forked child: a read blocked inside SimpleITK
    (which holds the GIL) then fails the test after `seconds` instead of hanging the whole run."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def run():
        try:
            call()
            sender.send(("nothing", ""))
        except Exception as exc:  # noqa: BLE001 - handed to the test
            sender.send((type(exc).__name__, str(exc)))

    child = context.Process(target=run, daemon=True)
    child.start()
    answered = receiver.poll(seconds)
    if not answered:
        child.kill()
    child.join()
    assert answered, f"still running after {seconds} s"
    return receiver.recv()


def test_named_pipe_is_refused_before_opening_it(tmp_path):
    fifo = tmp_path / "scan.nii.gz"
    os.mkfifo(fifo)
    kind, message = _error_within(20, lambda: read_image(fifo))
    assert kind == "InputError" and "is a named pipe (FIFO), not a regular file" in message


def test_named_pipe_in_a_dicom_folder_is_refused(tmp_path, examples_dir):
    """GDCM's scan of such a folder used to return 3 of the 20 slices, read as a 3-slice volume."""
    for f in (examples_dir / "example_ct_dicom").iterdir():
        shutil.copy(f, tmp_path / f.name)
    os.mkfifo(tmp_path / "pipe")
    kind, message = _error_within(20, lambda: read_image(tmp_path))
    assert kind == "InputError" and "contains a named pipe (FIFO), pipe" in message


@pytest.mark.parametrize("target, message", [
    ("loop.nii.gz", "symbolic link loop"),
    ("gone.nii.gz", "is a symbolic link to .*gone.nii.gz, which does not exist"),
])
def test_broken_links_are_named(tmp_path, target, message):
    link = tmp_path / "loop.nii.gz"
    link.symlink_to(tmp_path / target)
    with pytest.raises(InputError, match=message) as info:
        read_image(link)
    assert info.value.hint
