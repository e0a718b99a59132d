"""The memory a whole run needs, estimated from the model config alone (no torch): weights, the backbone's
peak (`backbone_memory`), decoding, the scan's buffers and preprocessing; and the fastest plan that fits.

The command line, the worker and the Slicer module estimate a run before anything is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .backbone_memory import backbone_peak_bytes
from .config import SATConfig
from .plans import MiB, BackbonePlan, plans_for


def segmentation_parameters(config: SATConfig) -> int:
    """Parameters of the segmentation network (`SATModel`), without the deep-supervision heads."""
    feats, k3 = config.features_per_stage, config.kernel_size ** 3

    def block(c_in: int, c_out: int) -> int:  # conv (weight + bias) + instance norm (weight + bias)
        return c_in * c_out * k3 + 3 * c_out

    total, c_in = 0, config.in_channels
    for c, n in zip(feats, config.n_conv_per_stage):
        total += block(c_in, c) + (n - 1) * block(c, c)
        c_in = c
    for s, n in enumerate(config.n_conv_per_stage_decoder):
        low, c, f = feats[-(s + 1)], feats[-(s + 2)], config.strides[-(s + 1)]
        total += low * c * f ** 3 + c + block(2 * c, c) + (n - 1) * block(c, c)
    q, h = config.query_dim, config.token_proj_hidden
    total += sum(feats) * h + h + h * q + q
    layer = 3 * q * q + 3 * q + q * q + q + 2 * q * config.decoder_ffn_dim + config.decoder_ffn_dim + q + 6 * q
    total += config.decoder_layers * layer + 2 * q
    m = config.mask_embed_hidden
    return total + q * m + m + m * feats[0] + feats[0]


def text_encoder_parameters(config: SATConfig) -> int:
    """Parameters of SAT's text encoder 'ours' (MPNet with pooler, projection, modality embedding)."""
    t = config.text_config
    h, inter, layers = int(t["hidden_size"]), int(t["intermediate_size"]), int(t["num_hidden_layers"])
    embeddings = (int(t["vocab_size"]) + int(t["max_position_embeddings"])) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h + h * inter + inter + inter * h + h + 2 * h
    relative = int(t["relative_attention_num_buckets"]) * int(t["num_attention_heads"])
    p, q = config.text_proj_hidden, config.query_dim
    return embeddings + layers * layer + relative + h * h + h + h * p + p + p * q + q + config.num_modalities * q


#: Peak bytes of preprocessing per voxel of the resampled (1×1×3 mm, uncropped) grid: MONAI resamples in
#: float64 with intermediate copies (measured with bench_model_window.py's method: ~57 bytes per voxel).
PREPROCESS_BYTES_PER_VOXEL = 60
#: Largest logits chunk decoded at once (float32 bytes); `inference.run_sliding_window` uses it too.
DECODE_CHUNK_BYTES = 256 * MiB


def decode_chunk(config: SATConfig, prompts: int) -> int:
    """Prompts decoded at once for a window (bounded by DECODE_CHUNK_BYTES of float32 logits)."""
    return max(1, min(prompts, DECODE_CHUNK_BYTES // (4 * math.prod(config.patch_size))))


@dataclass(frozen=True)
class VolumeSize:
    """Voxel counts of a scan: its own grid and SAT's resampled grid (before the foreground crop)."""

    input_voxels: int
    resampled_shape: tuple[int, int, int]

    @property
    def resampled_voxels(self) -> int:
        return math.prod(self.resampled_shape)


@dataclass(frozen=True)
class RunEstimate:
    """Peak memory of a run by part, in bytes. `device` is what the compute device must hold; `host` the RAM."""

    plan: BackbonePlan
    device_type: str
    precision: str
    weights: int
    backbone: int
    decode: int
    volume: int
    preprocess: int

    @property
    def device(self) -> int:
        """Weights plus the larger of the backbone and decoding phases (plus the scan's buffers on CPU)."""
        compute = self.weights + max(self.backbone, self.decode)
        return compute + self.volume if self.device_type == "cpu" else compute

    @property
    def host(self) -> int:
        """RAM: the scan's buffers and preprocessing (on CPU, all of `device` too)."""
        if self.device_type == "cpu":
            return max(self.device, self.preprocess)
        return max(self.volume, self.preprocess)

    @property
    def needed(self) -> int:
        """What must fit in the budget: the device's share, and on CPU also the preprocessing peak."""
        return self.host if self.device_type == "cpu" else self.device

    def breakdown(self) -> str:
        """'lean (64 MB slabs), fp32: weights 0.4, backbone 2.8, decoding 2.1 GB' (decimal GB)."""
        gb = 1e9
        parts = [f"weights {self.weights / gb:.1f}", f"backbone {self.backbone / gb:.1f}", f"decoding {self.decode / gb:.1f}"]
        if self.device_type == "cpu" and self.volume:
            parts.append(f"scan buffers {self.volume / gb:.1f}")
        if self.device_type == "cpu" and self.preprocess > self.device:
            parts.append(f"preprocessing {self.preprocess / gb:.1f}")
        return f"{self.plan}, {self.precision}: {', '.join(parts)} GB"

    def summary(self) -> str:
        where = "RAM" if self.device_type == "cpu" else "GPU memory"
        return f"{self.needed / 1e9:.1f} GB of {where} ({self.breakdown()})"


def weights_bytes(config: SATConfig, precision: str) -> int:
    """The segmentation weights in float32, plus autocast's cached half-precision copies."""
    params = segmentation_parameters(config)
    return params * 4 + (params * 2 if precision != "fp32" else 0)


def estimate_run(config: SATConfig, plan: BackbonePlan, device_type: str, precision: str, prompts: int,
                 volume: VolumeSize | None = None) -> RunEstimate:
    """Peak memory of segmenting one scan with `prompts` prompts (the scan's buffers only when `volume` is known)."""
    element = 4 if precision == "fp32" else 2
    window = math.prod(config.patch_size)
    pixel = config.features_per_stage[0] * window * element
    window_input = (config.in_channels + 1) * window * 4            # the zero-padded window, repeated to 3 channels
    chunk = decode_chunk(config, prompts)
    logits = chunk * window * element * 2 + (chunk * window * 4 if element == 2 else 0)
    gaussian = window * 4
    return RunEstimate(
        plan=plan, device_type=device_type, precision=precision, weights=weights_bytes(config, precision),
        backbone=backbone_peak_bytes(config, plan, precision, device_type) + window_input + gaussian,
        decode=pixel + logits + gaussian, volume=_volume_bytes(config, prompts, volume),
        preprocess=volume.resampled_voxels * PREPROCESS_BYTES_PER_VOXEL if volume else 0)


def _volume_bytes(config: SATConfig, prompts: int, volume: VolumeSize | None) -> int:
    """Per-scan buffers: input image, processed volume, blending weights, per-prompt numerators, bits and masks."""
    if volume is None:
        return 0
    h, w, d = volume.resampled_shape
    slab = min(config.patch_size[0], h) * w * d
    return (4 * volume.input_voxels + 8 * volume.resampled_voxels + prompts * 4 * slab
            + prompts * volume.resampled_voxels // 8 + prompts * volume.input_voxels)


def choose_plan(config: SATConfig, device_type: str, precision: str, prompts: int, budget: int,
                volume: VolumeSize | None = None) -> tuple[RunEstimate, RunEstimate]:
    """(the fastest plan that fits `budget` bytes, the leanest plan) as estimates; the first is None if none fits."""
    estimates = [estimate_run(config, plan, device_type, precision, prompts, volume) for plan in plans_for(device_type)]
    fitting = next((e for e in estimates if e.needed <= budget), None)
    return fitting, min(estimates, key=lambda e: e.needed)


def window_needs(config: SATConfig) -> dict[str, float]:
    """What one window needs, in decimal GB: GPU memory in fp16 with the leanest and the fastest plan, and RAM
    on the CPU in fp32 (for `models list` and the Slicer module's device line)."""
    gpu = [estimate_run(config, plan, "cuda", "fp16", 1).needed for plan in plans_for("cuda")]
    cpu = min(estimate_run(config, plan, "cpu", "fp32", 1).needed for plan in plans_for("cpu"))
    return {"gpu_gb": min(gpu) / 1e9, "gpu_fastest_gb": gpu[0] / 1e9, "cpu_gb": cpu / 1e9}
