"""The public segment()/Segmenter API end to end with the real (tiny, random-weight) SAT model."""

import threading

import numpy as np
import pytest
import SimpleITK as sitk

from SATSegmentLib import pipeline
from SATSegmentLib.errors import CancelledError, InputError
from SATSegmentLib.pipeline import Segmenter, resolve_modality, segment
from SATSegmentLib.vocabulary import normalize_modality


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from SATSegmentLib.model import load_model_folder

    return load_model_folder(tiny_model_dir, "cpu")


@pytest.fixture(scope="module")
def scan():
    """A small oblique CT-like volume: body (80 HU) with a bright organ, air outside."""
    size = (70, 36, 20)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in size[::-1]], indexing="ij")
    values = np.where(x**2 + y**2 < 0.8, 80.0, -900.0) + 300.0 * ((x - 0.2) ** 2 + y**2 + z**2 < 0.15)
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing((1.3, 1.1, 4.0))
    c, s = np.cos(0.2), np.sin(0.2)
    image.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    image.SetOrigin((-30.0, 20.0, 100.0))
    return image


def test_masks_on_input_grid_with_geometry_and_timings(loaded, scan):
    result = segment(scan, ["Liver", "spleen"], "ct", model=loaded)
    assert list(result.masks) == ["Liver", "spleen"]
    for prompt, mask in result.masks.items():
        assert mask.dtype == np.uint8 and mask.shape == scan.GetSize()[::-1] and set(np.unique(mask)) <= {0, 1}
        image = result.to_sitk(prompt)
        assert (image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection()) == \
               (scan.GetSize(), scan.GetOrigin(), scan.GetSpacing(), scan.GetDirection())
        assert result.volume_ml(prompt) == pytest.approx(mask.sum() * 1.3 * 1.1 * 4.0 / 1000)
    assert {"load", "preprocess", "backbone", "decode", "blend", "map_back"} <= set(result.timings)
    assert len(result.processed.backbone_seconds) > 1


def test_prompt_mask_does_not_change_when_prompts_are_added(loaded, scan):
    alone = segment(scan, ["liver"], "ct", model=loaded)
    crowd = segment(scan, ["spleen", "liver", "left kidney", "aorta"], "ct", model=loaded)
    np.testing.assert_array_equal(alone.processed_mask("liver"), crowd.processed_mask("liver"))
    np.testing.assert_array_equal(alone.masks["liver"], crowd.masks["liver"])


def test_cancel_leaves_no_result(loaded, scan):
    cancel = threading.Event()
    stages = []

    def progress(stage, i, n, message):
        stages.append(stage)
        if stage == "inference":
            cancel.set()

    with pytest.raises(CancelledError):
        segment(scan, ["liver"], "ct", model=loaded, progress=progress, cancel=cancel)
    assert stages[:3] == ["load", "preprocess", "embed"] and stages.count("inference") == 1


def test_roi_runs_fewer_windows_and_clears_outside(loaded, scan):
    full = segment(scan, ["liver", "aorta"], "ct", model=loaded)
    grid = full.grid
    centre = grid.affine @ np.array([6, grid.shape[1] / 2, grid.shape[2] / 2, 1.0])  # near the first rows
    roi = (*(centre[:3] - [4, 6, 10]), *(centre[:3] + [4, 6, 10]))
    part = segment(scan, ["liver", "aorta"], "ct", model=loaded, roi=roi)
    assert len(part.processed.backbone_seconds) < len(full.processed.backbone_seconds)
    inside = pipeline.roi_input_mask(roi, grid)
    assert inside.any() and not inside.all()
    for prompt in ("liver", "aorta"):
        assert not part.masks[prompt][~inside].any()
        np.testing.assert_array_equal(part.masks[prompt][inside], full.masks[prompt][inside])


def test_segmenter_reuses_preprocessing_and_backbone_features(loaded, scan, monkeypatch):
    segmenter = Segmenter(loaded, feature_cache_bytes=2**30)
    calls = {"preprocess": 0, "encode": 0}
    real_preprocess, real_encode = pipeline.preprocess, loaded.model.encode_image

    def counting_preprocess(*args, **kwargs):
        calls["preprocess"] += 1
        return real_preprocess(*args, **kwargs)

    def counting_encode(x, plan=None):
        calls["encode"] += 1
        return real_encode(x, plan)

    monkeypatch.setattr(pipeline, "preprocess", counting_preprocess)
    monkeypatch.setattr(loaded.model, "encode_image", counting_encode)
    first = segmenter.segment(scan, ["liver"], "ct")
    windows = calls["encode"]
    second = segmenter.segment(scan, ["spleen", "liver"], "ct")
    assert calls == {"preprocess": 1, "encode": windows}
    np.testing.assert_array_equal(first.masks["liver"], second.masks["liver"])
    segmenter.segment(scan, ["liver"], "ct", orientation="ASR")
    assert calls["preprocess"] == 2 and calls["encode"] > windows


def test_modality_resolution(examples_dir):
    assert resolve_modality("auto", {"modality": "CT"}) == "ct"
    assert resolve_modality("auto", {"modality": "MR"}) == "mri"
    with pytest.raises(InputError, match="Cannot tell the modality"):
        resolve_modality("auto", {"modality": None})
    assert [normalize_modality(m) for m in ("CT", "MRI", "T1", "flair", "PET", "pet/ct")] == ["ct", "mri", "mri", "mri", "pet", "ct"]


def test_bad_requests_are_input_errors(loaded, scan):
    with pytest.raises(InputError):
        segment(scan, [], "ct", model=loaded)
    with pytest.raises(InputError):
        segment(scan, ["liver", " "], "ct", model=loaded)
    with pytest.raises(InputError, match="does not overlap"):
        segment(scan, ["liver"], "ct", model=loaded, roi=(900, 900, 900, 950, 950, 950))
