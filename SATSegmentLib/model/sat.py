"""`SATModel`: SAT's segmentation network, split into a per-window image encoder and a cheap prompt decoder.

`encode_image` runs the U-Net once per window and returns `ImageFeatures`; `decode` turns any
number of prompt embeddings into mask logits against those features (SAT_REFERENCE.md §1.3-1.6).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from .config import SATConfig
from .decoder import QueryDecoder, positional_encoding_3d
from .plans import BackbonePlan
from .slabs import avg_pool_blocks
from .unet import PlainConvUNet

DEFAULT_CHUNK = 32  # prompts decoded at once; bounds the query-side memory for long prompt lists


@dataclass
class ImageFeatures:
    """Backbone output for a batch of windows: everything `decode` needs, nothing prompt-specific.

    tokens: (B, T, query_dim) projected multi-scale image tokens; key_pos: (1, T, query_dim);
    pixel: (B, C, H, W, D) full-resolution per-voxel embedding.
    """

    tokens: torch.Tensor
    key_pos: torch.Tensor
    pixel: torch.Tensor

    @property
    def nbytes(self) -> int:
        """Memory held by these features, so a caller can decide whether to cache them."""
        return sum(t.numel() * t.element_size() for t in (self.tokens, self.key_pos, self.pixel))

    @property
    def batch_size(self) -> int:
        return self.pixel.shape[0]

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(self.pixel.shape[2:])

    def to(self, device: torch.device | str) -> "ImageFeatures":
        return ImageFeatures(self.tokens.to(device), self.key_pos.to(device), self.pixel.to(device))


def _mlp(dims: tuple[int, ...], final_act: bool) -> nn.Sequential:
    """Linear/GELU stack with the official indices (Linear at 0, 2, ...)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if final_act or i < len(dims) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class SATModel(nn.Module):
    """SAT's `Maskformer` at inference (deep supervision off; `query_proj` is the identity)."""

    def __init__(self, config: SATConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = PlainConvUNet(config)
        self.projection_layer = _mlp((sum(config.features_per_stage), config.token_proj_hidden, config.query_dim),
                                     final_act=True)
        self.transformer_decoder = QueryDecoder(config)
        self.mask_embed_proj = _mlp((config.query_dim, config.mask_embed_hidden, config.features_per_stage[0]),
                                    final_act=True)
        pe = positional_encoding_3d(config.token_grid, config.query_dim)[None]
        self.register_buffer("key_pos", pe, persistent=False)  # fixed sinusoids, not in the checkpoints

    def reset_positional_encoding(self) -> None:
        """Recompute the fixed key positions, e.g. after building on the meta device and `to_empty`."""
        pe = positional_encoding_3d(self.config.token_grid, self.config.query_dim)[None]
        self.key_pos = pe.to(self.key_pos.device, self.key_pos.dtype)

    def _check_input(self, x: torch.Tensor) -> None:
        stride = self.config.total_stride
        if x.dim() != 5 or x.shape[1] != self.config.in_channels or any(s % stride for s in x.shape[2:]):
            raise InputError(
                f"SAT expects windows of shape (B, {self.config.in_channels}, H, W, D) with H, W, D divisible by "
                f"{stride}; got {tuple(x.shape)}", hint="pad the window to the model patch size")

    def _positions(self, grid: tuple[int, ...], ref: torch.Tensor) -> torch.Tensor:
        if tuple(grid) == self.config.token_grid:
            return self.key_pos.to(ref.dtype)
        return positional_encoding_3d(tuple(grid), self.config.query_dim)[None].to(ref.device, ref.dtype)

    def image_tokens(self, skips: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Average-pool every encoder output to the deepest grid, concatenate, project: (B, T, query_dim)."""
        pooled = [avg_pool_blocks(s, k) for s, k in zip(skips, self.config.token_pool_sizes)]
        x = torch.cat(pooled, dim=1)
        grid = tuple(x.shape[2:])
        x = self.projection_layer(x.permute(0, 2, 3, 4, 1))  # (B, h, w, d, C): channels last
        return x.flatten(1, 3), grid

    def encode_image(self, x: torch.Tensor, plan: BackbonePlan | None = None) -> ImageFeatures:
        """Run the backbone once on windows (B, 3, H, W, D), as the module forward or as `plan` says.

        Every plan computes the same features; the lean one needs about a fifth of the memory (model/lean.py).
        """
        self._check_input(x)
        if plan is None or plan.slab_bytes is None:
            skips = self.backbone.encoder(x)
            tokens, grid = self.image_tokens(skips)
            pixel = self.backbone.decoder(skips)
        else:
            from .lean import lean_decoder, lean_encoder

            skips = lean_encoder(self.backbone.encoder, x, plan.slab_bytes)
            tokens, grid = self.image_tokens(skips)
            pixel = lean_decoder(self.backbone.decoder, skips, plan.slab_bytes)
        return ImageFeatures(tokens=tokens, key_pos=self._positions(grid, tokens), pixel=pixel)

    def prompt_embeddings(self, features: ImageFeatures, queries: torch.Tensor) -> torch.Tensor:
        """Per-window mask embeddings (B, N, C_pixel) for queries (N, Q) or (B, N, Q)."""
        if queries.dim() == 2:
            queries = queries.unsqueeze(0).expand(features.batch_size, -1, -1)
        q = self.transformer_decoder(queries.to(features.tokens.dtype), features.tokens, features.key_pos)
        return self.mask_embed_proj(q)

    def decode(self, features: ImageFeatures, queries: torch.Tensor, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
        """Mask logits (B, N, H, W, D) for prompt embeddings (N, query_dim) or (B, N, query_dim).

        Prompts are decoded `chunk_size` at a time; results do not depend on the chunking.
        """
        n = queries.shape[-2]
        out = None
        for start in range(0, n, max(1, chunk_size)):
            emb = self.prompt_embeddings(features, queries[..., start:start + chunk_size, :])
            logits = torch.einsum("bchwd,bnc->bnhwd", features.pixel, emb.to(features.pixel.dtype))
            if out is None:
                out = logits.new_empty((features.batch_size, n, *features.spatial_shape))
            out[:, start:start + logits.shape[1]] = logits
        if out is None:
            out = features.pixel.new_empty((features.batch_size, 0, *features.spatial_shape))
        return out

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Logits (B, N, H, W, D) for prompt embeddings `queries` and windows `image`."""
        return self.decode(self.encode_image(image), queries)
