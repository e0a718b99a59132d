"""`SATConfig`: every architecture hyper-parameter of SAT, stored as `sat_config.json` in a model folder.

The defaults are the official SAT-Nano values (SAT_REFERENCE.md §1-2); `pro()` and `tiny()` change
widths only, so all variants run the same code path.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError

CONFIG_FILE = "sat_config.json"
FORMAT_VERSION = 1

# MPNet architecture of all-mpnet-base-v2 / BioLORD-2023-C (equals the shipped mpnet_tokenizer/config.json).
MPNET_BASE: dict[str, Any] = {
    "vocab_size": 30527,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "max_position_embeddings": 514,
    "relative_attention_num_buckets": 32,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "initializer_range": 0.02,
}


@dataclass
class SATConfig:
    """Architecture of one SAT model (segmentation network + text encoder 'ours')."""

    variant: str = "nano"
    in_channels: int = 3
    features_per_stage: tuple[int, ...] = (64, 64, 128, 256, 512, 768)
    strides: tuple[int, ...] = (1, 2, 2, 2, 2, 2)
    n_conv_per_stage: tuple[int, ...] = (2, 2, 2, 2, 2, 2)
    n_conv_per_stage_decoder: tuple[int, ...] = (2, 2, 2, 2, 2)
    kernel_size: int = 3
    patch_size: tuple[int, int, int] = (288, 288, 96)
    token_proj_hidden: int = 768          # projection_layer: Linear(sum(features)->this), GELU, Linear(->query_dim), GELU
    query_dim: int = 768
    decoder_layers: int = 6
    decoder_heads: int = 8
    decoder_ffn_dim: int = 2048
    decoder_dropout: float = 0.1          # training only
    mask_embed_hidden: int = 256          # mask_embed_proj: query_dim -> this -> features[0]
    deep_supervision_hidden: tuple[int, ...] = (256, 384, 512)  # mid_mask_embed_proj widths (checkpoints only)
    text_config: dict[str, Any] = field(default_factory=lambda: dict(MPNET_BASE))
    text_proj_hidden: int = 768           # text projection: hidden -> this -> query_dim
    num_modalities: int = 4               # modality_embed rows: ct=0, mri=1, us=2, pet=3
    max_text_length: int = 256

    def __post_init__(self) -> None:
        for name in ("features_per_stage", "strides", "n_conv_per_stage", "n_conv_per_stage_decoder",
                     "patch_size", "deep_supervision_hidden"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        self.text_config = dict(self.text_config)
        self.validate()

    # ---- constructors -------------------------------------------------------------------------
    @classmethod
    def nano(cls) -> "SATConfig":
        """SAT-Nano (`vision_backbone='UNET'`)."""
        return cls()

    @classmethod
    def pro(cls) -> "SATConfig":
        """SAT-Pro (`vision_backbone='UNET-L'`)."""
        return cls(
            variant="pro",
            features_per_stage=(128, 128, 256, 512, 1024, 1536),
            n_conv_per_stage=(3,) * 6,
            n_conv_per_stage_decoder=(3,) * 5,
            token_proj_hidden=1536,
            mask_embed_hidden=384,
            deep_supervision_hidden=(384, 512, 512),
        )

    @classmethod
    def tiny(cls) -> "SATConfig":
        """A few-MB model with the same code path, for tests (real 30527-word vocabulary)."""
        return cls(
            variant="tiny",
            features_per_stage=(8, 8, 16, 16, 32, 32),
            n_conv_per_stage=(1,) * 6,
            n_conv_per_stage_decoder=(1,) * 5,
            patch_size=(64, 64, 32),
            token_proj_hidden=32,
            query_dim=32,
            decoder_layers=2,
            decoder_heads=2,
            decoder_ffn_dim=64,
            mask_embed_hidden=16,
            deep_supervision_hidden=(16, 16, 16),
            text_config={**MPNET_BASE, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "intermediate_size": 64},
            text_proj_hidden=32,
        )

    @classmethod
    def for_variant(cls, variant: str) -> "SATConfig":
        """The config of a named variant ('nano', 'pro' or 'tiny')."""
        makers = {"nano": cls.nano, "pro": cls.pro, "tiny": cls.tiny}
        if variant not in makers:
            raise ModelError(f"unknown SAT variant {variant!r}", hint=f"use one of {', '.join(makers)}")
        return makers[variant]()

    # ---- derived values -----------------------------------------------------------------------
    @property
    def total_stride(self) -> int:
        """Down-sampling factor of the deepest stage (32 for SAT)."""
        out = 1
        for s in self.strides:
            out *= s
        return out

    @property
    def token_pool_sizes(self) -> tuple[int, ...]:
        """Average-pool kernel per encoder stage that brings it to the deepest grid (32, 16, 8, 4, 2, 1)."""
        sizes, factor = [], 1
        for s in self.strides:
            factor *= s
            sizes.append(self.total_stride // factor)
        return tuple(sizes)

    @property
    def token_grid(self) -> tuple[int, int, int]:
        return tuple(p // self.total_stride for p in self.patch_size)

    @property
    def text_hidden(self) -> int:
        return int(self.text_config["hidden_size"])

    def validate(self) -> None:
        """Raise `ModelError` when the fields cannot describe a working SAT model."""
        n = len(self.features_per_stage)
        problems = []
        if len(self.strides) != n or len(self.n_conv_per_stage) != n:
            problems.append("features_per_stage, strides and n_conv_per_stage must have the same length")
        if len(self.n_conv_per_stage_decoder) != n - 1:
            problems.append("n_conv_per_stage_decoder needs one entry per decoder stage (stages - 1)")
        if len(self.patch_size) != 3 or any(p % self.total_stride for p in self.patch_size):
            problems.append(f"patch_size {self.patch_size} must be 3 sizes divisible by {self.total_stride}")
        if self.query_dim % self.decoder_heads:
            problems.append("query_dim must be divisible by decoder_heads")
        if self.text_hidden % int(self.text_config["num_attention_heads"]):
            problems.append("text hidden_size must be divisible by its num_attention_heads")
        if problems:
            raise ModelError("invalid SAT configuration: " + "; ".join(problems),
                             hint="fix sat_config.json or use SATConfig.nano()/pro()/tiny()")

    # ---- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {"format_version": FORMAT_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SATConfig":
        data = dict(data)
        version = data.pop("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ModelError(f"sat_config.json has format_version {version}; this SATSegment reads {FORMAT_VERSION}",
                             hint="update SATSegment or re-install the model")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"sat_config.json has unknown fields: {', '.join(unknown)}",
                             hint="the model folder was written by another SATSegment version; re-install the model")
        return cls(**data)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "SATConfig":
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            raise ModelError(f"{path} is missing: {Path(folder)} is not a SATSegment model folder",
                             hint="a model folder holds sat_config.json, segmentation.pth and text_encoder.pth; "
                                  "install the model again or pass the official .pth files instead")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read {path}: {exc}", hint="re-install the model") from exc
        if not isinstance(data, dict):
            raise ModelError(f"{path} does not hold a JSON object", hint="re-install the model")
        try:
            return cls.from_dict(data)
        except TypeError as exc:
            raise ModelError(f"{path} is not a valid SAT configuration: {exc}", hint="re-install the model") from exc
