"""The model computes SAT's function: checked against independent hand-written references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from SATSegmentLib.model import SATConfig
from SATSegmentLib.model.decoder import QueryDecoderLayer, positional_encoding_3d
from SATSegmentLib.model.testing import random_models


def numpy_pe(grid, channels):
    """SAT_REFERENCE §1.4, written out element by element."""
    ch = int(math.ceil(channels / 6) * 2)
    h, w, d = grid
    out = np.zeros((h, w, d, 3 * ch))
    for x in range(h):
        for y in range(w):
            for z in range(d):
                for axis, p in enumerate((x, y, z)):
                    for j in range(ch // 2):
                        f = p / (10000 ** (2 * j / ch))
                        out[x, y, z, axis * ch + 2 * j] = math.sin(f)
                        out[x, y, z, axis * ch + 2 * j + 1] = math.cos(f)
    return out[..., :channels].reshape(h * w * d, channels)


@pytest.mark.parametrize("grid, channels", [((9, 9, 3), 768), ((2, 3, 2), 32), ((2, 2, 1), 10)])
def test_positional_encoding_matches_formula(grid, channels):
    ours = positional_encoding_3d(grid, channels).double().numpy()
    np.testing.assert_allclose(ours, numpy_pe(grid, channels), atol=2e-6)


def reference_layer(layer: QueryDecoderLayer, q, memory, pos, heads):
    """One pre-norm cross-attention layer from raw weights (no nn.MultiheadAttention)."""
    sd = {k: v.double() for k, v in layer.state_dict().items()}
    q, memory, pos = q.double(), memory.double(), pos.double()
    c = q.shape[-1]

    def ln(x, name):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * sd[f"{name}.weight"] + sd[f"{name}.bias"]

    w, b = sd["multihead_attn.in_proj_weight"], sd["multihead_attn.in_proj_bias"]
    t = ln(q, "norm2")
    qq = t @ w[:c].T + b[:c]
    kk = (memory + pos) @ w[c:2 * c].T + b[c:2 * c]
    vv = memory @ w[2 * c:].T + b[2 * c:]
    hd = c // heads
    outs = []
    for h in range(heads):
        s = slice(h * hd, (h + 1) * hd)
        att = torch.softmax(qq[..., s] @ kk[..., s].transpose(-1, -2) / math.sqrt(hd), dim=-1)
        outs.append(att @ vv[..., s])
    attended = torch.cat(outs, -1) @ sd["multihead_attn.out_proj.weight"].T + sd["multihead_attn.out_proj.bias"]
    q = q + attended
    t = ln(q, "norm3")
    hidden = torch.clamp(t @ sd["linear1.weight"].T + sd["linear1.bias"], min=0)
    return q + hidden @ sd["linear2.weight"].T + sd["linear2.bias"]


def test_decoder_layer_matches_reference():
    torch.manual_seed(0)
    layer = QueryDecoderLayer(dim=16, heads=4, ffn_dim=24, dropout=0.1).eval()
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.3)
    q, memory, pos = torch.randn(2, 5, 16), torch.randn(2, 7, 16), torch.randn(1, 7, 16)
    with torch.no_grad():
        ours = layer(q, memory, pos)
    torch.testing.assert_close(ours.double(), reference_layer(layer, q, memory, pos, heads=4), atol=1e-5, rtol=1e-5)


def reference_sat(sd, cfg: SATConfig, image, queries):
    """Whole SAT forward written with torch.nn.functional from the state dict (SAT_REFERENCE §1.2-1.6)."""
    def block(x, prefix, stride):
        x = F.conv3d(x, sd[f"{prefix}.all_modules.0.weight"], sd[f"{prefix}.all_modules.0.bias"], stride, padding=1)
        x = F.instance_norm(x, weight=sd[f"{prefix}.all_modules.1.weight"], bias=sd[f"{prefix}.all_modules.1.bias"],
                            eps=1e-5)
        return F.leaky_relu(x, 0.01)

    x, skips = image, []
    for s, (n, stride) in enumerate(zip(cfg.n_conv_per_stage, cfg.strides)):
        for i in range(n):
            x = block(x, f"backbone.encoder.stages.{s}.0.convs.{i}", stride if i == 0 else 1)
        skips.append(x)
    pooled = [F.avg_pool3d(t, 2 ** (5 - s)) for s, t in enumerate(skips[:5])] + [skips[5]]
    tokens = torch.cat(pooled, 1).permute(0, 2, 3, 4, 1)
    tokens = F.gelu(F.linear(tokens, sd["projection_layer.0.weight"], sd["projection_layer.0.bias"]))
    tokens = F.gelu(F.linear(tokens, sd["projection_layer.2.weight"], sd["projection_layer.2.bias"]))
    B = image.shape[0]
    memory = tokens.reshape(B, -1, cfg.query_dim)
    pos = torch.tensor(numpy_pe(cfg.token_grid, cfg.query_dim), dtype=image.dtype)[None]
    x = skips[-1]
    for s in range(5):
        x = F.conv_transpose3d(x, sd[f"backbone.decoder.transpconvs.{s}.weight"],
                               sd[f"backbone.decoder.transpconvs.{s}.bias"], stride=2)
        x = torch.cat([x, skips[-(s + 2)]], 1)
        for i in range(cfg.n_conv_per_stage_decoder[s]):
            x = block(x, f"backbone.decoder.stages.{s}.convs.{i}", 1)
    q = queries[None].expand(B, -1, -1)
    for layer_index in range(cfg.decoder_layers):
        layer = QueryDecoderLayer(cfg.query_dim, cfg.decoder_heads, cfg.decoder_ffn_dim, 0.0)
        prefix = f"transformer_decoder.layers.{layer_index}."
        layer.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
        q = reference_layer(layer, q, memory, pos, cfg.decoder_heads).to(image.dtype)
    q = F.layer_norm(q, (cfg.query_dim,), sd["transformer_decoder.norm.weight"], sd["transformer_decoder.norm.bias"])
    e = F.gelu(F.linear(q, sd["mask_embed_proj.0.weight"], sd["mask_embed_proj.0.bias"]))
    e = F.gelu(F.linear(e, sd["mask_embed_proj.2.weight"], sd["mask_embed_proj.2.bias"]))
    return (x[:, None] * e[:, :, :, None, None, None]).sum(2)


def test_full_forward_matches_functional_reference():
    cfg = SATConfig.tiny()
    model, _ = random_models(cfg, seed=3)
    torch.manual_seed(1)
    image, queries = torch.randn(2, 3, *cfg.patch_size), torch.randn(5, cfg.query_dim)
    with torch.no_grad():
        ours = model(queries, image)
        ref = reference_sat(model.state_dict(), cfg, image, queries)
    assert ours.shape == (2, 5, *cfg.patch_size)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_prompts_never_interact_and_chunking_is_invisible():
    cfg = SATConfig.tiny()
    model, _ = random_models(cfg, seed=4)
    torch.manual_seed(2)
    image, queries = torch.randn(1, 3, *cfg.patch_size), torch.randn(7, cfg.query_dim)
    with torch.no_grad():
        features = model.encode_image(image)
        alone = model.decode(features, queries[:1])
        together = model.decode(features, queries, chunk_size=3)
        reordered = model.decode(features, queries.flip(0), chunk_size=100)
    torch.testing.assert_close(together[:, :1], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reordered.flip(1), together, atol=1e-5, rtol=1e-5)


def test_image_features_report_size_and_move():
    cfg = SATConfig.tiny()
    model, _ = random_models(cfg)
    with torch.no_grad():
        features = model.encode_image(torch.randn(1, 3, *cfg.patch_size))
    expected = sum(t.numel() * 4 for t in (features.tokens, features.key_pos, features.pixel))
    assert features.nbytes == expected
    assert features.pixel.shape == (1, cfg.features_per_stage[0], *cfg.patch_size)
    assert features.to("cpu").tokens.shape == (1, math.prod(cfg.token_grid), cfg.query_dim)


def test_window_shape_is_checked():
    from SATSegmentLib.errors import InputError

    model, _ = random_models(SATConfig.tiny())
    with pytest.raises(InputError, match="divisible by 32"):
        model.encode_image(torch.zeros(1, 3, 64, 64, 20))
