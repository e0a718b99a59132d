"""SAT's text encoder 'ours' (SAT_REFERENCE.md §2.2): MPNet (BioLORD-2023-C architecture), masked mean
pooling, a Linear-GELU-Linear projection, plus a learned per-modality embedding.

The MPNet is built from the config only (no download); all weights come from SAT's text_encoder.pth.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from . import tokenizer
from .config import SATConfig

MODALITY_CODES = {"ct": 0, "mri": 1, "us": 2, "pet": 3}


def modality_code(modality: str) -> int:
    """Row of `modality_embed` for a SAT modality name ('ct', 'mri', 'us', 'pet'; any case)."""
    key = str(modality).strip().lower()
    if key not in MODALITY_CODES:
        raise InputError(f"unknown modality {modality!r} for SAT's text encoder",
                         hint=f"use one of {', '.join(MODALITY_CODES)}")
    return MODALITY_CODES[key]


class TextTower(nn.Module):
    """Holds the MPNet under the official name `biolord`."""

    def __init__(self, config: SATConfig) -> None:
        super().__init__()
        from transformers import MPNetConfig, MPNetModel

        mpnet_config = MPNetConfig(**config.text_config)
        mpnet_config._attn_implementation = "eager"
        self.biolord = MPNetModel(mpnet_config, add_pooling_layer=True)


class TextEncoder(nn.Module):
    """Prompt text + modality -> query embedding (N, query_dim)."""

    def __init__(self, config: SATConfig) -> None:
        super().__init__()
        self.config = config
        self.text_tower = TextTower(config)
        hidden = config.text_hidden
        self.projection_layer = nn.Sequential(
            nn.Linear(hidden, config.text_proj_hidden), nn.GELU(), nn.Linear(config.text_proj_hidden, config.query_dim))
        self.modality_embed = nn.Embedding(config.num_modalities, config.query_dim)

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """SAT's token ids and attention mask (see `tokenizer.tokenize`)."""
        return tokenizer.tokenize(list(texts), self.config.max_text_length)

    def encode_tokens(self, ids: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Embeddings for token ids (N, L), attention mask (N, L) and modality codes (N,)."""
        hidden = self.text_tower.biolord(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return self.projection_layer(pooled) + self.modality_embed(codes)

    def forward(self, texts: list[str], modality: str) -> torch.Tensor:
        """Embeddings (N, query_dim) of prompts `texts`, all of one `modality`."""
        texts = list(texts)
        device = self.modality_embed.weight.device
        ids, mask = self.tokenize(texts)
        codes = torch.full((len(texts),), modality_code(modality), dtype=torch.long, device=device)
        return self.encode_tokens(ids.to(device), mask.to(device), codes)
