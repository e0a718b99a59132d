"""The lean backbone forward computes what the module forward computes, for every window shape and slab size."""

from __future__ import annotations

import pytest
import torch

from SATSegmentLib.model import SATConfig
from SATSegmentLib.model import plans
from SATSegmentLib.model.plans import PLAIN, BackbonePlan, slab_ranges, slab_rows
from SATSegmentLib.model.slabs import Moments, avg_pool_blocks
from SATSegmentLib.model.testing import random_models

ONE_ROW = BackbonePlan("lean", 2_000)        # one row per slab wherever the oneDNN floor is lifted
SEVEN_ROWS = BackbonePlan("lean", 1_000_000)   # ~7 rows at the tiny model's full resolution: slabs of 7 and 8 rows
# bf16 windows keep every map at least 2 voxels wide: PyTorch 2.13's CPU bf16 conv3d is wrong when a stride-2
# conv makes an axis of length 1 (upstream oneDNN; full-size SAT windows never do, their deepest maps are 9x9x3).
BF16_WINDOW = (96, 64, 64)


@pytest.fixture(scope="module")
def tiny_model():
    return random_models(SATConfig.tiny(), seed=3)[0]


@pytest.fixture
def small_slabs(monkeypatch):
    """Let slabs be as thin as the byte size says (the oneDNN row floor would make the tiny model's passes one slab)."""
    monkeypatch.setattr(plans, "ONEDNN_MIN_ELEMENTS", 0)


def window(shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 1, *shape, generator=generator).repeat(1, 3, 1, 1, 1)


def features(model, x, plan, precision="fp32"):
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        return model.encode_image(x, plan)


@pytest.mark.parametrize("plan", [ONE_ROW, SEVEN_ROWS, BackbonePlan.lean(64)], ids=["one row", "seven rows", "one slab"])
@pytest.mark.parametrize("shape", [(64, 64, 32), (96, 64, 32), (160, 96, 64), (32, 128, 64)])
def test_lean_features_equal_the_module_forward(tiny_model, small_slabs, shape, plan):
    x = window(shape)
    reference, lean = features(tiny_model, x, PLAIN), features(tiny_model, x, plan)
    torch.testing.assert_close(lean.pixel, reference.pixel, rtol=0, atol=2e-5)
    torch.testing.assert_close(lean.tokens, reference.tokens, rtol=0, atol=2e-5)
    assert lean.pixel.shape == reference.pixel.shape


def test_lean_logits_equal_the_module_forward(tiny_model, small_slabs):
    x = window((96, 64, 32), seed=1)
    queries = torch.randn(5, tiny_model.config.query_dim, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        reference = tiny_model.decode(features(tiny_model, x, PLAIN), queries)
        lean = tiny_model.decode(features(tiny_model, x, SEVEN_ROWS), queries)
    assert (lean - reference).abs().max() < 1e-4


@pytest.mark.parametrize("plan", [ONE_ROW, SEVEN_ROWS, BackbonePlan.lean(64)], ids=["one row", "seven rows", "one slab"])
def test_lean_features_in_bf16_stay_within_bf16_rounding(tiny_model, small_slabs, plan):
    """Half precision rounds differently in a different order; the lean plan must not add more than that."""
    x = window(BF16_WINDOW, seed=4)
    exact = features(tiny_model, x, PLAIN).pixel
    reference = features(tiny_model, x, PLAIN, "bf16").pixel.float()
    lean = features(tiny_model, x, plan, "bf16").pixel.float()
    assert lean.dtype == reference.dtype
    rounding = (reference - exact).abs().max()
    assert (lean - reference).abs().max() <= 2 * rounding
    assert (lean - exact).abs().max() <= 2 * rounding


def test_thin_slabs_really_split_the_passes(small_slabs):
    """The equality tests above compare several slabs per pass, including ones that do not divide the axis."""
    rows = slab_rows(SEVEN_ROWS.slab_bytes, 8, 64, 8, 64 * 32, 96)
    ranges = slab_ranges(96, rows)
    assert len(ranges) > 3 and 96 % rows != 0 and {b - a for a, b in ranges} == {rows, rows + 1}
    assert len(slab_ranges(96, slab_rows(ONE_ROW.slab_bytes, 8, 64, 8, 64 * 32, 96))) == 96
    assert ranges[0][0] == 0 and ranges[-1][1] == 96
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


@pytest.mark.parametrize("height, rows", [(288, 54), (97, 24), (5, 8), (288, 288), (10, 3)])
def test_slab_ranges_cover_the_axis_with_no_slab_shorter_than_asked(height, rows):
    ranges = slab_ranges(height, rows)
    assert [a for a, _ in ranges][0] == 0 and ranges[-1][1] == height
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(stop - start >= min(rows, height) for start, stop in ranges)


def test_moments_over_slabs_equal_the_whole_map_statistics():
    x = (torch.randn(2, 5, 30, 7, 6, generator=torch.Generator().manual_seed(0)) * 3 + 40).contiguous(
        memory_format=torch.channels_last_3d)
    moments = Moments()
    for start, stop in slab_ranges(30, 7):
        moments.update(x[:, :, start:stop])
    var, mean = torch.var_mean(x.double(), dim=(2, 3, 4), correction=0)
    torch.testing.assert_close(moments.mean, mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(moments.m2 / moments.count, var, rtol=1e-5, atol=1e-6)


def test_pooling_of_channels_last_maps_equals_avg_pool():
    x = torch.randn(1, 4, 64, 32, 32).contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(avg_pool_blocks(x, 16), torch.nn.functional.avg_pool3d(x.contiguous(), 16))
