"""Every backbone plan gives the same masks on a real CT: the lean plan against the module forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from SATSegmentLib.imageio import read_image
from SATSegmentLib.model import plans
from SATSegmentLib.model.plans import PLAIN, BackbonePlan
from SATSegmentLib.pipeline import Segmenter
from SATSegmentLib.preprocess import preprocess

PROMPTS = ["liver", "spleen", "left kidney", "aorta", "heart"]
LEAN = BackbonePlan("lean", 1_000_000)  # several slabs per full-resolution pass of the tiny model


@pytest.fixture
def small_slabs(monkeypatch):
    monkeypatch.setattr(plans, "ONEDNN_MIN_ELEMENTS", 0)


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir):
    from SATSegmentLib.model import load_model_folder

    return Segmenter(load_model_folder(tiny_model_dir, "cpu"), "cpu")


@pytest.fixture(scope="module")
def real_ct(examples_dir):
    return str(examples_dir / "example_ct_sm.nii.gz")


@pytest.fixture(scope="module")
def roi(real_ct):
    """A 60 mm box (RAS) at the scan's centre: a few windows instead of the whole scan, to keep the test quick."""
    image, meta = read_image(real_ct)
    centre = meta["ras_affine"] @ np.array([*(np.array(image.GetSize()) / 2), 1.0])
    return [*(centre[:3] - 30), *(centre[:3] + 30)]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / max(int(a.sum()) + int(b.sum()), 1)


def test_lean_plan_gives_the_masks_of_the_module_forward(segmenter, real_ct, roi, small_slabs):
    plain = segmenter.segment(real_ct, PROMPTS, "ct", roi=roi, plan=PLAIN)
    lean = segmenter.segment(real_ct, PROMPTS, "ct", roi=roi, plan=LEAN)
    assert lean.cache["backbone_windows_computed"] == plain.cache["backbone_windows_computed"] > 1
    for prompt in PROMPTS:
        assert 0.01 < plain.processed_mask(prompt).mean() < 0.99  # a real mask, not all 0 or all 1 (outside the ROI: 0)
        assert dice(lean.processed_mask(prompt), plain.processed_mask(prompt)) >= 0.9999
        assert dice(lean.masks[prompt], plain.masks[prompt]) >= 0.9999


def test_lean_plan_gives_the_logits_of_the_module_forward(segmenter, real_ct, small_slabs):
    image, meta = read_image(real_ct)
    volume = preprocess(image, "ct", "RAS", meta["ras_affine"]).array
    model = segmenter.loaded.model
    h, w, d = model.config.patch_size
    window = torch.zeros(1, 3, h, w, d)
    cut = volume[:h, :w, :d]
    window[:, :, : cut.shape[0], : cut.shape[1], : cut.shape[2]] = torch.from_numpy(np.ascontiguousarray(cut))
    queries = segmenter.loaded.embed(PROMPTS, "ct")
    with torch.inference_mode():
        plain = model.decode(model.encode_image(window, PLAIN), queries)
        lean = model.decode(model.encode_image(window, LEAN), queries)
    assert (lean - plain).abs().max() <= 1e-3
    assert plain.abs().max() > 0.1  # logits of a real size


def test_cpu_runs_take_the_lean_plan_by_default(segmenter):
    """On CPU the lean plan is the fastest (README, Performance), so it is the default whenever it fits."""
    assert segmenter.plan_for(1).plan == BackbonePlan.lean()


def test_a_scan_that_does_not_fit_the_cap_is_refused_before_the_backbone(segmenter, real_ct):
    from SATSegmentLib.errors import OutOfMemoryError

    capped = Segmenter(segmenter.loaded, "cpu", max_memory="0.1GB")
    with pytest.raises(OutOfMemoryError, match=r"needs \d+\.\d GB .*--max-memory 0\.1 GB") as error:
        capped.segment(real_ct, ["liver"], "ct")
    assert error.value.exit_code == 5
