"""SAT's query decoder: pre-norm, cross-attention-only transformer layers (SAT_REFERENCE.md §1.5).

There is no self-attention, so prompts never interact: each mask depends only on its own query.
`norm1` exists (it is in the checkpoints) but is unused, as in the official model.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import SATConfig


class QueryDecoderLayer(nn.Module):
    """q += MHA(norm2(q), memory + pos, memory); q += FFN(norm3(q)) with a ReLU FFN."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """q: (B, N, C) queries; memory: (B, T, C) image tokens; pos: (1 or B, T, C) key positions."""
        t = self.norm2(q)
        attended = self.multihead_attn(t, memory + pos, memory, need_weights=False)[0]
        q = q + self.dropout2(attended)
        t = self.norm3(q)
        return q + self.dropout3(self.linear2(self.dropout(torch.relu(self.linear1(t)))))


class QueryDecoder(nn.Module):
    """A stack of `QueryDecoderLayer`s followed by a final LayerNorm."""

    def __init__(self, cfg: SATConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            QueryDecoderLayer(cfg.query_dim, cfg.decoder_heads, cfg.decoder_ffn_dim, cfg.decoder_dropout)
            for _ in range(cfg.decoder_layers)
        )
        self.norm = nn.LayerNorm(cfg.query_dim)

    def forward(self, q: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            q = layer(q, memory, pos)
        return self.norm(q)


def positional_encoding_3d(grid: tuple[int, int, int], channels: int) -> torch.Tensor:
    """SAT's fixed 3D sin/cos encoding of a token grid, flattened in (h w d) order: (h*w*d, channels).

    Per axis, `ceil(channels/6)*2` channels of interleaved [sin f0, cos f0, sin f1, ...] with
    inv_freq_j = 10000^(-2j/ch); the x|y|z blocks are concatenated and cut to `channels`.
    """
    ch = -(-channels // 6) * 2
    inv_freq = 1.0 / (10000 ** (torch.arange(0, ch, 2, dtype=torch.float32) / ch))

    def axis(n: int) -> torch.Tensor:
        angles = torch.arange(n, dtype=torch.float32)[:, None] * inv_freq[None, :]
        return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)  # (n, ch), interleaved

    h, w, d = grid
    ex, ey, ez = axis(h), axis(w), axis(d)
    emb = torch.cat((
        ex[:, None, None, :].expand(h, w, d, ch),
        ey[None, :, None, :].expand(h, w, d, ch),
        ez[None, None, :, :].expand(h, w, d, ch),
    ), dim=-1)[..., :channels]
    return emb.reshape(h * w * d, channels)
