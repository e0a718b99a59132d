"""A DICOM folder is read only when its slices form one regular 3D grid of one series.

Each faulty folder is built from real data: the 20-slice CT series (anonymised: no SeriesInstanceUID
nor SOPInstanceUID, like many exported studies) and series written slice by slice from the real
NIfTI CT and MR. Before these checks, each of them was read without a word into a wrong volume.
"""

import math
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from SATSegmentLib.slicegeometry import SliceHeader, slice_order
from SATSegmentLib.errors import InputError
from SATSegmentLib.imageio import read_image

CT_UID = "1.2.826.0.1.3680043.2.1125.42.1"
MR_UID = "1.2.826.0.1.3680043.2.1125.42.2"


@pytest.fixture(scope="module")
def real_files(examples_dir):
    """The real CT series' files in slice order (2 mm apart, from foot to head)."""
    return sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(examples_dir / "example_ct_dicom"))


@pytest.fixture(scope="module")
def real_volume(real_files):
    """The real series as SimpleITK stacks it, cast as read_image returns it."""
    return sitk.Cast(sitk.ReadImage(real_files), sitk.sitkFloat32)


def copy_files(files, folder):
    folder.mkdir(exist_ok=True)
    for f in files:
        shutil.copy(f, folder)
    return folder


def slice_volume(examples_dir, name="example_ct_sm.nii.gz", slices=12):
    """A small real volume (3 mm slices) to write as a DICOM series."""
    return sitk.ReadImage(str(examples_dir / name))[:, :, :slices]


def write_series(folder, volume, uid=CT_UID, modality="CT", description="CT from NIfTI", positions=None, first=0, skip=()):
    """Write `volume` as one DICOM file per slice (but those in `skip`), with its real geometry unless
    `positions` (LPS mm) say otherwise; `first` is added to the instance numbers in the files' names and UIDs."""
    folder.mkdir(exist_ok=True)
    direction = np.asarray(volume.GetDirection()).reshape(3, 3)
    orientation = "\\".join(f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in sorted(set(range(volume.GetDepth())) - set(skip)):
        position = volume.TransformIndexToPhysicalPoint((0, 0, k)) if positions is None else positions[k]
        image = volume[:, :, k]
        tags = {"0020|000e": uid, "0008|0018": f"{uid}.{first + k + 1}", "0008|0060": modality, "0008|103e": description,
                "0020|0013": str(first + k + 1), "0020|0032": "\\".join(f"{v:.6f}" for v in position), "0020|0037": orientation}
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid}.{first + k + 1}.dcm"))
        writer.Execute(image)
    return folder


def along_normal(volume, steps):
    """Positions of the slices of `volume` when consecutive slices are `steps` mm apart along its normal."""
    origin = np.asarray(volume.GetOrigin())
    normal = np.asarray(volume.GetDirection()).reshape(3, 3)[:, 2]
    return [origin + normal * z for z in np.concatenate([[0.0], np.cumsum(steps)])]


def test_real_series_reads_exactly_as_simpleitk_stacks_it(examples_dir, real_volume):
    image, meta = read_image(examples_dir / "example_ct_dicom")
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(real_volume))
    assert (image.GetOrigin(), image.GetSpacing(), image.GetDirection()) == \
        (real_volume.GetOrigin(), real_volume.GetSpacing(), real_volume.GetDirection())
    assert meta["notes"] == [] and meta["n_files"] == 20 and meta["modality"] == "CT"


def test_a_written_series_reads_back_as_its_volume(tmp_path, examples_dir):
    """The writer of the faulty series below is faithful: only the faults injected differ."""
    volume = slice_volume(examples_dir)
    image, meta = read_image(write_series(tmp_path / "ct", volume))
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(volume))
    assert np.allclose(image.GetSpacing(), volume.GetSpacing()) and np.allclose(image.GetOrigin(), volume.GetOrigin(), atol=1e-4)
    assert meta["series_uid"] == CT_UID and meta["notes"] == []


@pytest.fixture
def ct_and_mr(tmp_path, examples_dir, real_files):
    """The real (anonymised) CT series and an MR series in one folder."""
    folder = copy_files(real_files, tmp_path / "study")
    write_series(folder, slice_volume(examples_dir, "example_mr_sm.nii.gz", 5), MR_UID, "MR", "T2 haste")
    return folder


def test_folder_with_two_series_lists_them_and_asks_for_one(ct_and_mr):
    with pytest.raises(InputError) as info:
        read_image(ct_and_mr)
    message = info.value.message
    assert "2 DICOM series" in message
    assert "CT Body 3.0 (CT, 20 slices): '' (no SeriesInstanceUID)" in message
    assert f"T2 haste (MR, 5 slices): {MR_UID}" in message
    assert "--series UID" in info.value.hint


@pytest.mark.parametrize("uid, size, modality", [(MR_UID, (117, 91, 5), "MR"), ("", (512, 512, 20), "CT")])
def test_series_uid_chooses_the_series(ct_and_mr, uid, size, modality):
    image, meta = read_image(ct_and_mr, series_uid=uid)
    assert image.GetSize() == size and meta["modality"] == modality and meta["series_uid"] == uid


def test_unknown_series_uid_is_refused_with_the_list(ct_and_mr):
    with pytest.raises(InputError, match="no DICOM series with SeriesInstanceUID '1.2.3'") as info:
        read_image(ct_and_mr, series_uid="1.2.3")
    assert MR_UID in info.value.message and "--series" in info.value.hint


def test_series_uid_for_a_file_is_refused(examples_dir):
    with pytest.raises(InputError, match="is a file, not a DICOM folder"):
        read_image(examples_dir / "example_ct_sm.nii.gz", series_uid=MR_UID)


def test_missing_slice_is_refused(tmp_path, real_files):
    """Before: 19 slices on a uniform 2.11 mm grid, every slice after the gap misplaced."""
    folder = copy_files(real_files[:10] + real_files[11:], tmp_path / "ct")
    with pytest.raises(InputError) as info:
        read_image(folder)
    assert "slice 11 of 20 is missing: positions jump by 4 mm where the others are 2 mm apart" in info.value.message
    assert "every file of the series was copied" in info.value.hint


def test_several_gaps_are_all_named(tmp_path, examples_dir):
    folder = write_series(tmp_path / "ct", slice_volume(examples_dir), skip=(3, 8, 9))
    with pytest.raises(InputError, match=r"slices 4, 9 and 10 of 12 are missing: positions jump by 6 mm and 9 mm "
                                         r"where the others are 3 mm apart"):
        read_image(folder)


def test_repeated_files_are_used_once_with_a_note(tmp_path, real_files, real_volume):
    """Before: the 3 copies were stacked as extra slices, on a squeezed grid."""
    folder = copy_files(real_files, tmp_path / "ct")
    for f in real_files[4:7]:
        shutil.copy(f, folder / ("copy of " + f.rsplit("/", 1)[-1]))
    image, meta = read_image(folder)
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(real_volume))
    assert image.GetSpacing() == real_volume.GetSpacing()
    assert meta["n_files"] == 20 and len(meta["notes"]) == 1 and "3 repeated file(s)" in meta["notes"][0]


def test_two_different_images_at_one_position_are_refused(tmp_path, examples_dir):
    """E.g. two time points of one series in one folder: interleaved, they made one volume of half the spacing."""
    volume = slice_volume(examples_dir)
    folder = write_series(tmp_path / "ct", volume)
    write_series(folder, volume[:, :, 3:4] + 10, first=100, positions=[volume.TransformIndexToPhysicalPoint((0, 0, 3))])
    with pytest.raises(InputError, match="two different images at the same position") as info:
        read_image(folder)
    assert "AcquisitionNumber" in info.value.hint


def test_gantry_tilt_is_refused(tmp_path, examples_dir):
    volume = slice_volume(examples_dir)
    step = volume.GetSpacing()[2]
    shift = np.asarray(volume.GetDirection()).reshape(3, 3)[:, 1] * step * math.tan(math.radians(15))
    positions = [np.asarray(p) + k * shift for k, p in enumerate(along_normal(volume, [step] * 11))]
    with pytest.raises(InputError, match="gantry tilt of 15.0°") as info:
        read_image(write_series(tmp_path / "ct", volume, positions=positions))
    assert "Acquisition geometry regularization" in info.value.hint


def test_varying_slice_spacing_is_refused(tmp_path, examples_dir):
    """A series reconstructed at 2.5 mm, then 5 mm: a uniform grid misplaces most slices."""
    volume = slice_volume(examples_dir)
    folder = write_series(tmp_path / "ct", volume, positions=along_normal(volume, [2.5] * 5 + [5.0] * 6))
    with pytest.raises(InputError, match=r"slice spacing of the DICOM series varies from 2.5 mm to 5 mm: .* 6.82 mm from"):
        read_image(folder)


def _rotated_in_plane(image, degrees=5.0):
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    direction = np.asarray(image.GetDirection()).reshape(3, 3) @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    image.SetDirection(direction.ravel().tolist())
    return image


def _coarser_pixels(image):
    image.SetSpacing((2.5, 2.5, image.GetSpacing()[2]))
    return image


@pytest.mark.parametrize("change, what", [
    (lambda image: image[:100, :90], "image sizes: .* has 100x90 where .* has 122x101"),
    (_rotated_in_plane, "orientations"),
    (_coarser_pixels, "pixel spacings: .* has 2.5 mm x 2.5 mm where .* has 3 mm x 3 mm"),
])
def test_slices_of_another_volume_are_refused(tmp_path, examples_dir, change, what):
    """A localizer or a reformat exported into the series used to be stacked as one more slice."""
    volume = slice_volume(examples_dir)
    folder = write_series(tmp_path / "ct", volume)
    position = volume.TransformIndexToPhysicalPoint((0, 0, 5))
    write_series(folder, change(volume[:, :, 5:6]), positions=[position], first=5)  # replaces slice 6
    with pytest.raises(InputError, match=f"The DICOM series mixes {what}") as info:
        read_image(folder)
    assert "one 3D volume" in info.value.hint


def _header(k, position=(0.0, 0.0, 0.0), sop=""):
    """The header of a file that does not exist: the checks must decide from the header alone."""
    return SliceHeader(f"s{k}.dcm", (8, 8, 1), sop, "CT", "", None if position is None else np.array(position, float),
                       np.array([1.0, 0, 0, 0, 1, 0]), np.array([1.0, 1.0]))


def test_slices_without_a_position_are_refused():
    """GDCM puts such slices at 0 mm, 1 mm apart."""
    headers = [_header(0, (0, 0, 0)), _header(1, None), _header(2, (0, 0, 6))]
    with pytest.raises(InputError, match="1 of the 3 DICOM files .*s1.dcm.* have no valid slice position"):
        slice_order(headers)


def test_slice_order_follows_the_normal_not_the_file_order():
    headers = [_header(k, (5.0, 0.0, z)) for k, z in enumerate([6.0, 0.0, 3.0])]
    assert slice_order(headers) == (["s1.dcm", "s2.dcm", "s0.dcm"], [])


def test_repeated_sop_instance_uid_is_dropped_without_reading_pixels():
    headers = [_header(0, (0, 0, 0), "1.2.3.1"), _header(1, (0, 0, 0), "1.2.3.1"), _header(2, (0, 0, 3), "1.2.3.2")]
    files, notes = slice_order(headers)
    assert files == ["s0.dcm", "s2.dcm"] and "1 repeated file(s)" in notes[0]


def test_one_slice_copied_twice_stays_one_slice():
    """Then read_image refuses it as a 2D image."""
    assert slice_order([_header(0, sop="1.2.3.1"), _header(1, sop="1.2.3.1")])[0] == ["s0.dcm"]
