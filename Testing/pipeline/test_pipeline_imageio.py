"""Every kind of bad input gets a clear InputError; good inputs come back as float32 3D volumes."""

import gzip
import multiprocessing
import os
import shutil
import struct
import time

import nibabel
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from SATSegmentLib.errors import InputError
from SATSegmentLib.imageio import ras_affine_of, read_image, validate_image


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


def _nrrd_with_spacings(tmp_path, name):
    """An NRRD whose voxel size is given by a 'spacings' field, as teem (not ITK) checks it."""
    path = tmp_path / name
    nrrd.write(str(path), np.zeros((4, 5, 6), np.int16), {"spacings": [1.0, 1.0, 2.0]})
    return path


@pytest.mark.parametrize("name, field, zero", [("v.nrrd", b"(1,0,0)", b"(0,0,0)"),
                                               ("spacings.nrrd", b"spacings: 1 1 2", b"spacings: 1 0 2"),
                                               ("v.mha", b"ElementSpacing = 1 1 2", b"ElementSpacing = 1 0 2")])
def test_zero_voxel_size_is_named_not_called_corrupt(tmp_path, name, field, zero):
    path = _nrrd_with_spacings(tmp_path, name) if name == "spacings.nrrd" else write(tmp_path, volume(), name)
    header = path.read_bytes()
    assert field in header
    path.write_bytes(header.replace(field, zero, 1))
    with pytest.raises(InputError, match="gives a voxel size of 0 mm") as info:
        read_image(path)
    assert "real voxel size" in info.value.hint


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


@pytest.mark.parametrize("name", ["c.nii.gz", "c.nrrd"])
def test_complex_voxels_are_refused(tmp_path, name):
    voxels = (np.ones((4, 5, 6)) + 1j * np.arange(120).reshape(4, 5, 6)).astype(np.complex64)
    if name.endswith(".nii.gz"):
        nibabel.save(nibabel.Nifti1Image(voxels, np.eye(4)), tmp_path / name)
    else:
        sitk.WriteImage(sitk.GetImageFromArray(voxels), str(tmp_path / name))
    with pytest.raises(InputError, match="complex-valued voxels; SAT needs real intensities") as info:
        read_image(tmp_path / name)
    assert "magnitude" in info.value.hint


def nifti_with(tmp_path, examples_dir, name="ct.nii", pixdim=None, codes=None):
    """The real 3 mm CT with header fields replaced: `pixdim` {axis (1..3): mm}, `codes` (qform, sform)."""
    header = bytearray(gzip.decompress((examples_dir / "example_ct_sm.nii.gz").read_bytes()))
    for axis, size in (pixdim or {}).items():
        header[76 + 4 * axis:80 + 4 * axis] = struct.pack("<f", size)
    if codes is not None:
        header[252:256] = struct.pack("<2h", *codes)
    (tmp_path / name).write_bytes(bytes(header))
    return tmp_path / name


@pytest.mark.parametrize("pixdim, codes, axis", [
    ({3: 0.0}, (0, 0), "k"),  # no qform/sform: was read as 1 mm slices, a third of every volume
    ({3: 0.0}, (0, 2), "k"),  # SimpleITK then ignores the sform and takes 1 mm too
    ({1: 0.0, 2: 0.0}, (1, 0), "i"),
    ({2: float("nan")}, None, "j"),
])
def test_nifti_zero_voxel_size_is_refused(tmp_path, examples_dir, pixdim, codes, axis):
    with pytest.raises(InputError, match=f"voxel size of .* mm along its {axis} axis") as info:
        read_image(nifti_with(tmp_path, examples_dir, pixdim=pixdim, codes=codes))
    assert "real voxel size" in info.value.hint


def nifti2_with(tmp_path, examples_dir, zooms=None, name="ct2.nii.gz"):
    """The real 3 mm CT saved as NIfTI-2 (540-byte header), its voxel sizes optionally replaced."""
    nifti1 = nibabel.load(examples_dir / "example_ct_sm.nii.gz")
    nifti2 = nibabel.Nifti2Image(np.asanyarray(nifti1.dataobj), nifti1.affine)
    if zooms is not None:
        nifti2.header["pixdim"][1:4] = zooms
    nibabel.save(nifti2, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("zooms", [None, (3.0, 3.0, 0.0)])
def test_nifti2_is_refused_with_a_way_out(tmp_path, examples_dir, zooms):
    """SimpleITK cannot read NIfTI-2: say so and how to convert, instead of 'Unable to determine ImageIO reader'."""
    with pytest.raises(InputError, match="is a NIfTI-2 file") as info:
        read_image(nifti2_with(tmp_path, examples_dir, zooms=zooms))
    assert "Nifti1Image" in info.value.hint


def test_nifti_negative_voxel_size_is_read_flipped_with_a_note(tmp_path, examples_dir):
    plain, _ = read_image(examples_dir / "example_ct_sm.nii.gz")
    image, meta = read_image(nifti_with(tmp_path, examples_dir, pixdim={1: -3.0}))
    assert image.GetSpacing() == plain.GetSpacing()
    assert image.GetDirection()[0] == -plain.GetDirection()[0]  # SimpleITK flips the axis; nibabel would not
    assert len(meta["notes"]) == 1 and "negative voxel size along the i axis (-3 mm)" in meta["notes"][0]


def _ramp():
    """A (z, y, x) volume whose voxels differ, so a flip shows in physical space."""
    return volume(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), spacing=(1.5, 1.5, 3.0))


@pytest.mark.parametrize("name, field", [("v.mha", "ElementSpacing"), ("v.mhd", "ElementSize")])
def test_metaimage_negative_voxel_size_is_read_flipped_with_a_note(tmp_path, name, field):
    """ITK reads a negative ElementSpacing (or ElementSize, without ElementSpacing) as |s| with the axis flipped."""
    plain, plain_meta = read_image(write(tmp_path, _ramp(), name))
    path = tmp_path / name
    header = path.read_bytes()
    assert b"ElementSpacing = 1.5 1.5 3\n" in header
    path.write_bytes(header.replace(b"ElementSpacing = 1.5 1.5 3\n", f"{field} = 1.5 1.5 -3\n".encode()))
    image, meta = read_image(path)
    assert image.GetSpacing() == plain.GetSpacing() == (1.5, 1.5, 3.0)
    assert image.GetDirection()[8] == -plain.GetDirection()[8] == -1.0  # the k axis now points the other way
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(plain))
    assert plain_meta["notes"] == []
    assert len(meta["notes"]) == 1
    assert f"MetaImage header ({field}) gives a negative voxel size along the k axis (-3 mm)" in meta["notes"][0]
    assert "read as 3 mm with that axis flipped" in meta["notes"][0]


def test_nrrd_negative_spacing_is_read_flipped_with_a_note(tmp_path):
    import nrrd

    data = sitk.GetArrayFromImage(_ramp()).transpose(2, 1, 0)  # pynrrd writes (x, y, z)
    nrrd.write(str(tmp_path / "plain.nrrd"), data, {"spacings": [1.5, 1.5, 3.0]})
    nrrd.write(str(tmp_path / "neg.nrrd"), data, {"spacings": [-1.5, 1.5, 3.0]})
    plain, plain_meta = read_image(tmp_path / "plain.nrrd")
    image, meta = read_image(tmp_path / "neg.nrrd")
    assert image.GetSpacing() == plain.GetSpacing() and image.GetDirection()[0] == -plain.GetDirection()[0] == -1.0
    assert plain_meta["notes"] == []
    assert len(meta["notes"]) == 1 and "NRRD header (spacings) gives a negative voxel size along the i axis" in meta["notes"][0]


def test_nrrd_space_directions_pointing_backwards_are_no_negative_size(tmp_path):
    """A negative component of a space direction is the orientation itself (its length is the voxel size)."""
    import nrrd

    data = sitk.GetArrayFromImage(_ramp()).transpose(2, 1, 0)
    nrrd.write(str(tmp_path / "v.nrrd"), data, {"space": "left-posterior-superior", "space origin": [0.0, 0.0, 0.0],
                                                "space directions": np.diag([-1.5, 1.5, -3.0])})
    image, meta = read_image(tmp_path / "v.nrrd")
    assert image.GetSpacing() == (1.5, 1.5, 3.0) and image.GetDirection() == (-1, 0, 0, 0, 1, 0, 0, 0, -1)
    assert meta["notes"] == []


def test_nifti_without_orientation_gets_a_note(tmp_path, examples_dir):
    _, meta = read_image(nifti_with(tmp_path, examples_dir, codes=(0, 0)))
    assert len(meta["notes"]) == 1 and "does not say how the image lies in the body" in meta["notes"][0]


def test_nifti_whose_qform_and_sform_disagree_gets_a_note(tmp_path, examples_dir):
    nifti = nibabel.load(examples_dir / "example_ct_sm.nii.gz")
    shifted = nifti.affine.copy()
    shifted[0, 3] += 10.0
    nifti.set_qform(nifti.affine, code=1)
    nifti.set_sform(shifted, code=2)  # SimpleITK reads the qform here, nibabel the sform
    nibabel.save(nifti, tmp_path / "two.nii.gz")
    image, meta = read_image(tmp_path / "two.nii.gz")
    assert len(meta["notes"]) == 1 and "(qform and sform) place the image differently" in meta["notes"][0]
    assert np.allclose(meta["ras_affine"], ras_affine_of(image))


@pytest.mark.parametrize("name", ["example_ct_sm.nii.gz", "example_mr_sm.nii.gz", "example_ct.nii.gz"])
def test_sound_scans_have_no_notes(examples_dir, name):
    """Every note is shown to the user as a warning: a sound scan must not get one."""
    assert read_image(examples_dir / name)[1]["notes"] == []
