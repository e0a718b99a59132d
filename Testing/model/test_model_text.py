"""SAT's tokenisation quirk and the text encoder's pooling, projection and modality embedding."""

from __future__ import annotations

import pytest
import torch

from SATSegmentLib.errors import InputError
from SATSegmentLib.model import SATConfig
from SATSegmentLib.model.testing import random_models
from SATSegmentLib.model.tokenizer import tokenize, token_ids


@pytest.mark.parametrize("text, ids", [
    ("liver", [105, 11294, 106]),
    ("left kidney", [105, 2191, 14238, 106]),
    ("Left Kidney", [105, 2191, 14238, 106]),
])
def test_token_ids(text, ids):
    assert token_ids(text) == ids


def test_padding_mask_and_truncation():
    ids, mask = tokenize(["liver", "left kidney"])
    assert ids.tolist() == [[105, 11294, 106, 0], [105, 2191, 14238, 106]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    long = token_ids("liver " * 300)
    assert len(long) == 256 and long[0] == 105 and long[-1] == 106 and long[-2] == 11294


def test_embedding_is_independent_of_the_batch():
    _, encoder = random_models(SATConfig.tiny(), seed=1)
    with torch.no_grad():
        alone = encoder(["liver"], "ct")
        batch = encoder(["lumbar vertebrae 5 (l5)", "liver", "left kidney"], "ct")
    torch.testing.assert_close(batch[1:2], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batch[0], batch[1])


def test_pooling_projection_and_modality_follow_the_spec():
    cfg = SATConfig.tiny()
    _, encoder = random_models(cfg, seed=2)
    ids, mask = tokenize(["left kidney", "liver"])
    with torch.no_grad():
        hidden = encoder.text_tower.biolord(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = torch.stack([hidden[i, : int(mask[i].sum())].mean(0) for i in range(2)])
        p = encoder.projection_layer
        expected = p[2](torch.nn.functional.gelu(p[0](pooled))) + encoder.modality_embed.weight[3]
        ours = encoder(["left kidney", "liver"], "PET")
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        ct, mri = encoder(["liver"], "ct"), encoder(["liver"], "mri")
    torch.testing.assert_close(mri - ct, (encoder.modality_embed.weight[1] - encoder.modality_embed.weight[0])[None])


def test_unknown_modality_is_an_input_error():
    _, encoder = random_models(SATConfig.tiny())
    with pytest.raises(InputError, match="modality"):
        encoder(["liver"], "xray")
