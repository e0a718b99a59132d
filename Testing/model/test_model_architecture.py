"""The SAT re-implementation has exactly the official state-dict keys, shapes and parameter counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from SATSegmentLib.model import SATConfig
from SATSegmentLib.model.checkpoint import detect_variant, expected_shapes
from SATSegmentLib.model.sat import SATModel
from SATSegmentLib.model.testing import official_segmentation_payload, official_text_encoder_payload
from SATSegmentLib.model.text_encoder import TextEncoder


def official_list(shared_dir: Path, name: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in (shared_dir / "sat" / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape = line.split("\t")[:2]
            rows.append((key, tuple(json.loads(shape.replace("(", "[").replace(")", "]").replace(",]", "]")))))
    return rows


@pytest.mark.parametrize("variant", ["nano", "pro"])
def test_segmentation_keys_and_shapes_equal_official_list(shared_dir, variant):
    official = official_list(shared_dir, f"state_dict_{variant}.txt")
    inference = [(k, s) for k, s in official if not k.startswith("mid_mask_embed_proj.")]
    assert list(expected_shapes("segmentation", SATConfig.for_variant(variant)).items()) == inference


@pytest.mark.parametrize("variant, params", [("nano", 109_194_624), ("pro", 475_561_344)])
def test_parameter_counts(variant, params):
    with torch.device("meta"):
        model = SATModel(SATConfig.for_variant(variant))
    assert sum(p.numel() for p in model.parameters()) == params


def test_text_encoder_keys_and_shapes_equal_official_list(shared_dir):
    official = [(k.removeprefix("module."), s) for k, s in official_list(shared_dir, "state_dict_text_encoder_ours.txt")]
    assert list(expected_shapes("text", SATConfig.nano()).items()) == official
    with torch.device("meta"):
        encoder = TextEncoder(SATConfig.nano())
    assert sum(p.numel() for p in encoder.parameters()) == 110_670_720


@pytest.mark.parametrize("variant", ["nano", "pro"])
def test_written_checkpoint_layout_is_the_official_one(shared_dir, variant):
    """testing.py writes what the SAT trainer writes: module. prefix, aliases and deep-supervision heads."""
    with torch.device("meta"):
        model = SATModel(SATConfig.for_variant(variant))
    payload = official_segmentation_payload(model)
    assert set(payload) == {"step", "model_state_dict"}
    written = [(k, tuple(v.shape)) for k, v in payload["model_state_dict"].items()]
    official = [("module." + k, s) for k, s in official_list(shared_dir, f"state_dict_{variant}.txt")]
    assert sorted(written) == sorted(official)
    assert detect_variant(payload["model_state_dict"]) == variant


def test_text_payload_has_position_ids_and_official_keys(shared_dir):
    with torch.device("meta"):
        encoder = TextEncoder(SATConfig.nano())
    state = official_text_encoder_payload(encoder)["model_state_dict"]
    official = {k for k, _ in official_list(shared_dir, "state_dict_text_encoder_ours.txt")}
    assert set(state) - official == {"module.text_tower.biolord.embeddings.position_ids"}
    assert official <= set(state)


def test_alias_keys_share_tensors():
    model = SATModel(SATConfig.tiny())
    sd = model.state_dict()
    conv = "backbone.encoder.stages.0.0.convs.0"
    assert sd[f"{conv}.conv.weight"].data_ptr() == sd[f"{conv}.all_modules.0.weight"].data_ptr()
    assert sd[f"{conv}.norm.bias"].data_ptr() == sd[f"{conv}.all_modules.1.bias"].data_ptr()


def test_config_round_trip_and_tiny_shape():
    for cfg in (SATConfig.nano(), SATConfig.pro(), SATConfig.tiny()):
        again = SATConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg
    tiny = SATConfig.tiny()
    assert tiny.text_config["vocab_size"] == 30527
    assert all(p % 32 == 0 for p in tiny.patch_size)
    assert SATConfig.nano().token_pool_sizes == (32, 16, 8, 4, 2, 1)
    assert SATConfig.nano().token_grid == (9, 9, 3)


def test_config_rejects_bad_values(tmp_path):
    from SATSegmentLib.errors import ModelError

    with pytest.raises(ModelError, match="divisible"):
        SATConfig(patch_size=(100, 96, 96))
    with pytest.raises(ModelError, match="unknown fields"):
        SATConfig.from_dict({**SATConfig.tiny().to_dict(), "colour": "red"})
    with pytest.raises(ModelError, match="sat_config.json"):
        SATConfig.load(tmp_path)
    (tmp_path / "sat_config.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        SATConfig.load(tmp_path)


def test_default_text_config_equals_shipped_mpnet_config():
    from SATSegmentLib.model.tokenizer import TOKENIZER_DIR

    shipped = json.loads((TOKENIZER_DIR / "config.json").read_text())
    for key, value in SATConfig.nano().text_config.items():
        assert shipped[key] == value, key
    assert (TOKENIZER_DIR / "README.md").is_file()
