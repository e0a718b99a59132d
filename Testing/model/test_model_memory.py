"""The memory estimator, from the config alone, predicts what the forwards really allocate (within 20 %)."""

from __future__ import annotations

import pytest
import torch

from SATSegmentLib.model import SATConfig
from SATSegmentLib.model.backbone_memory import backbone_peak_bytes
from SATSegmentLib.model.memory import (
    choose_plan,
    estimate_run,
    segmentation_parameters,
    text_encoder_parameters,
)
from SATSegmentLib.model.plans import PLAIN, BackbonePlan, plans_for
from SATSegmentLib.model.sat import SATModel
from SATSegmentLib.model.testing import peak_allocated_bytes, random_models
from SATSegmentLib.model.text_encoder import TextEncoder

TOLERANCE = 0.2


def measured_and_estimated(model, config, shape, plan, precision):
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))

    def forward():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            model.encode_image(x, plan)

    return peak_allocated_bytes(forward), backbone_peak_bytes(config, plan, precision, "cpu", 1, shape)


@pytest.fixture(scope="module")
def tiny():
    return random_models(SATConfig.tiny(), seed=1)[0]


@pytest.fixture(scope="module")
def nano():
    """SAT-Nano's architecture (random init, no text encoder): weights of the real size, a small window."""
    torch.manual_seed(0)
    return SATModel(SATConfig.nano()).eval()


@pytest.mark.parametrize("precision, shape", [("fp32", (64, 64, 32)), ("fp32", (96, 64, 32)),
                                              ("fp32", (160, 96, 64)), ("bf16", (96, 64, 64)), ("bf16", (160, 96, 64))])
@pytest.mark.parametrize("plan", [BackbonePlan.lean(64), BackbonePlan("lean", 200_000)], ids=["64 MB", "0.2 MB"])
def test_lean_estimate_matches_the_tiny_models_allocations(tiny, precision, shape, plan):
    measured, estimated = measured_and_estimated(tiny, tiny.config, shape, plan, precision)
    assert abs(estimated - measured) <= TOLERANCE * measured, (measured, estimated)


@pytest.mark.parametrize("plan, precision", [(PLAIN, "fp32"), (BackbonePlan.lean(), "fp32"), (BackbonePlan.lean(), "bf16")],
                         ids=["plain fp32", "lean fp32", "lean bf16"])
def test_estimate_matches_nanos_allocations(nano, precision, plan):
    measured, estimated = measured_and_estimated(nano, nano.config, (96, 96, 64), plan, precision)
    assert abs(estimated - measured) <= TOLERANCE * measured, (measured, estimated)


def test_plain_estimate_matches_the_tiny_models_allocations(tiny):
    measured, estimated = measured_and_estimated(tiny, tiny.config, (96, 64, 32), PLAIN, "fp32")
    assert abs(estimated - measured) <= TOLERANCE * measured, (measured, estimated)


@pytest.mark.parametrize("variant", ["tiny", "nano", "pro"])
def test_parameter_count_from_the_config_equals_the_model(variant):
    config = SATConfig.for_variant(variant)
    with torch.device("meta"):
        model = SATModel(config)
    assert segmentation_parameters(config) == sum(p.numel() for p in model.parameters())


def test_text_encoder_parameter_count():
    assert text_encoder_parameters(SATConfig.nano()) == 110_670_720  # SAT_REFERENCE.md §1.8
    config = SATConfig.tiny()
    assert text_encoder_parameters(config) == sum(p.numel() for p in TextEncoder(config).parameters())


def test_lean_plan_needs_far_less_than_the_module_forward_at_full_size():
    nano = SATConfig.nano()
    plain = estimate_run(nano, PLAIN, "cpu", "fp32", 1)
    lean = estimate_run(nano, BackbonePlan.lean(), "cpu", "fp32", 1)
    assert plain.backbone > 3 * lean.backbone
    assert lean.needed < 4.5e9 <= plain.needed  # the lean plan is what makes `--max-memory 4.5GB` possible


def test_choose_plan_takes_the_fastest_plan_that_fits():
    nano = SATConfig.nano()
    fastest, _ = choose_plan(nano, "cuda", "fp16", 1, 100e9)
    assert fastest.plan == plans_for("cuda")[0] == PLAIN
    squeezed, leanest = choose_plan(nano, "cuda", "fp16", 1, 4e9)
    assert squeezed.plan.name == "lean" and squeezed.needed <= 4e9
    none, leanest = choose_plan(nano, "cuda", "fp16", 1, 1e9)
    assert none is None and leanest.needed > 1e9
