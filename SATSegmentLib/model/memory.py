"""Memory plans for SAT's backbone and the peak memory they need, computed from the model config alone.

No torch here: the command line, the worker and the Slicer module estimate a run before anything is
loaded. `backbone_peak_bytes` walks the same stages, slabs and temporaries as the executors
(`unet.PlainConvUNet.forward` for 'plain', `lean.py` for 'lean') and adds up the bytes alive at each
step; Testing/model checks it against the allocations the profiler measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import SATConfig

MiB = 2**20
#: PyTorch's CPU convs use oneDNN only when batch·channels·rows·width of the input exceeds this
#: (`use_mkldnn` in ATen's ConvUtils.h); below it an im2col path runs, slower and with a column buffer.
ONEDNN_MIN_ELEMENTS = 20480
#: Slab working sizes of the lean plan, fastest first (benchmarks/bench_model_window.py: on CPU, slabs
#: beyond ~64 MB are slower, since temporaries that large are fresh pages from the kernel every time).
LEAN_SLAB_MB = (64, 32, 16, 8)


@dataclass(frozen=True)
class BackbonePlan:
    """How the backbone forward runs: 'plain' (the module forward) or 'lean' with row slabs of ~`slab_bytes`."""

    name: str = "plain"
    slab_bytes: int | None = None

    @classmethod
    def lean(cls, slab_mb: float = LEAN_SLAB_MB[0]) -> "BackbonePlan":
        return cls("lean", int(slab_mb * MiB))

    def __str__(self) -> str:
        return self.name if self.slab_bytes is None else f"lean ({self.slab_bytes / MiB:g} MB slabs)"


PLAIN = BackbonePlan()


def plans_for(device_type: str) -> list[BackbonePlan]:
    """Candidate plans, fastest first. On CPU the lean plan is faster than the module forward (channels-last
    oneDNN convs, no concatenation; measured); on CUDA the module forward is assumed fastest (not measured here)."""
    lean = [BackbonePlan.lean(mb) for mb in LEAN_SLAB_MB]
    return lean if device_type == "cpu" else [PLAIN, *lean]


def slab_rows(slab_bytes: int, in_channels: int, in_width: int, out_channels: int, out_plane: int, height: int,
              stride: int = 1, inputs: int = 1) -> int:
    """Rows per slab of a conv pass: its inputs and output take about `slab_bytes` (float32), and each
    input has enough rows for oneDNN's fast path (`inputs` > 1: a transposed conv's source of half width)."""
    row_bytes = 4 * out_channels * out_plane * (1 + inputs)
    per_input_row = in_channels * in_width * stride // (2 if inputs > 1 else 1)
    fast = -(-(ONEDNN_MIN_ELEMENTS + 1) // per_input_row)
    return max(1, min(height, max(fast, slab_bytes // row_bytes)))


def slab_ranges(height: int, rows: int) -> list[tuple[int, int]]:
    """[start, stop) of each slab: height // rows slabs of near-equal size, so none is shorter than `rows`
    (a short last slab would drop off oneDNN's fast path)."""
    count = max(1, height // max(rows, 1))
    bounds = [round(i * height / count) for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def largest_slab(height: int, rows: int) -> int:
    return max(stop - start for start, stop in slab_ranges(height, rows))


# ---- parameters ---------------------------------------------------------------------------------

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


# ---- the backbone walk --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Level:
    channels: int
    dims: tuple[int, int, int]

    def bytes(self, element: int, rows: int | None = None, batch: int = 1, channels: int | None = None) -> int:
        h, w, d = self.dims
        return batch * (channels or self.channels) * (h if rows is None else rows) * w * d * element


def _levels(config: SATConfig, shape: tuple[int, int, int]) -> list[_Level]:
    levels, dims = [], tuple(shape)
    for c, s in zip(config.features_per_stage, config.strides):
        dims = tuple(-(-n // s) for n in dims)
        levels.append(_Level(c, dims))
    return levels


def _uses_im2col(element: int, device_type: str, batch: int, channels: int, rows: int, width: int) -> bool:
    """Whether PyTorch runs this CPU conv on its im2col path (float32 inputs below oneDNN's size threshold)."""
    return device_type == "cpu" and element == 4 and batch * channels * rows * width <= ONEDNN_MIN_ELEMENTS


class _Walk:
    """Bytes alive over time: `live` holds stored maps, `at(temporary)` records a momentary peak."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0

    def at(self, temporary: int = 0) -> None:
        self.peak = max(self.peak, self.live + temporary)


class _Convs:
    """Temporaries of one conv call (output, workspace) for a precision and device."""

    def __init__(self, config: SATConfig, element: int, device_type: str, batch: int) -> None:
        self.k3 = config.kernel_size ** 3
        self.kernel = config.kernel_size
        self.element, self.device_type, self.batch = element, device_type, batch

    def workspace(self, src: _Level, dst: _Level, rows: int, in_rows: int, channels_last: bool) -> int:
        """im2col's column buffer, or oneDNN's reordered weights (plus the input's reorder off channels-last,
        and in half precision the output's)."""
        if _uses_im2col(self.element, self.device_type, self.batch, src.channels, in_rows, src.dims[1]):
            return self.k3 * src.channels * dst.bytes(4, rows, self.batch, 1)
        weights = src.channels * dst.channels * self.k3 * self.element
        if channels_last:
            return weights
        reordered_output = dst.bytes(self.element, rows, self.batch) if self.element == 2 else 0  # measured
        return weights + src.bytes(self.element, in_rows, self.batch) + reordered_output

    def slab(self, src: _Level, dst: _Level, rows: int, stride: int, normalised: bool, float_input: bool) -> int:
        """Peak of one slab of a lean conv pass (`slabs.conv_pass` with one source)."""
        e, b = self.element, self.batch
        in_rows = (rows - 1) * stride + self.kernel
        read = src.bytes(4 if normalised or float_input else e, in_rows, b)  # normalised or zero-padded rows
        cast = src.bytes(2, in_rows, b) if e == 2 and (normalised or float_input) else 0
        out = dst.bytes(e, rows, b)
        statistics = dst.bytes(4, rows, b) * (2 if e == 2 else 1)
        halo = dst.bytes(e, 1, b)
        return max(read + cast + out + self.workspace(src, dst, rows, in_rows, True), out + statistics) + halo

    def decoder_slab(self, low: _Level, level: _Level, rows: int) -> int:
        """Peak of one slab of conv(cat(up(low), skip)) as two summed convs (`lean.lean_decoder`)."""
        e, b = self.element, self.batch
        up = level.bytes(e, rows + 4, b)            # whole row pairs around the slab and its halo
        padded = level.bytes(e, rows + 2, b)        # a slab at the map's ends is zero-padded
        out = level.bytes(e, rows, b)
        workspace = self.workspace(level, level, rows, rows + 2, True)
        accumulator = level.bytes(4, rows, b)
        return max(up + padded + out + workspace, accumulator + padded + out + workspace,
                   2 * accumulator) + level.bytes(e, 1, b)


def _lean_rows(plan: BackbonePlan, src: _Level, dst: _Level, stride: int, inputs: int = 1) -> int:
    """The largest slab of the pass (`lean._rows` and `slab_ranges`)."""
    rows = slab_rows(plan.slab_bytes, src.channels, src.dims[1], dst.channels, dst.dims[1] * dst.dims[2],
                     dst.dims[0], stride, inputs)
    return largest_slab(dst.dims[0], rows)


def _lean_peak(config: SATConfig, shape: tuple[int, int, int], plan: BackbonePlan, element: int, device_type: str,
               batch: int) -> int:
    levels = _levels(config, shape)
    convs = _Convs(config, element, device_type, batch)
    walk = _Walk()
    image = _Level(config.in_channels, tuple(shape))
    walk.live = image.bytes(4, batch=batch)  # the channels-last copy of the input window

    def rest_of_stage(level: _Level, blocks: int) -> None:  # `lean._rest_of_stage`
        rows = _lean_rows(plan, level, level, 1)
        for _ in range(blocks - 1):
            walk.at(convs.slab(level, level, rows, 1, normalised=True, float_input=False))
        walk.at(level.bytes(4, rows, batch) if element == 2 else 0)

    previous = image
    for level, stride, blocks in zip(levels, config.strides, config.n_conv_per_stage):
        rows = _lean_rows(plan, previous, level, stride)
        buffer = level.bytes(element, batch=batch)
        first_slab = convs.slab(previous, level, rows, stride, normalised=False, float_input=previous is image)
        walk.at(first_slab)  # the stage's buffer is allocated once the first slab is computed
        walk.live += buffer
        walk.at(level.bytes(element, rows, batch) if rows == level.dims[0] else first_slab)
        rest_of_stage(level, blocks)
        if previous is image:
            walk.live -= image.bytes(4, batch=batch)
        previous = level
    walk.at(max(level.bytes(element, batch=batch) // k for level, k in zip(levels, config.token_pool_sizes)))
    for s, blocks in enumerate(config.n_conv_per_stage_decoder):
        low, level = levels[-(s + 1)], levels[-(s + 2)]
        walk.at(convs.decoder_slab(low, level, _lean_rows(plan, level, level, 1, inputs=2)))
        walk.live -= low.bytes(element, batch=batch)  # the skip's buffer now holds this stage's output
        rest_of_stage(level, blocks)
    return walk.peak


def _plain_peak(config: SATConfig, shape: tuple[int, int, int], element: int, device_type: str, batch: int) -> int:
    """The module forward (NCDHW): conv → new map, instance norm → new map, LeakyReLU in place; the decoder
    concatenates the up-sampled map and the skip, and keeps the concatenation until its stage returns."""
    levels = _levels(config, shape)
    convs = _Convs(config, element, device_type, batch)
    walk = _Walk()

    def block(src: _Level, dst: _Level, channels: int | None = None) -> None:
        src = _Level(channels or src.channels, src.dims)
        out = dst.bytes(element, batch=batch)
        walk.at(out + convs.workspace(src, dst, dst.dims[0], src.dims[0], False))
        walk.at(2 * out)  # conv output and instance-norm output

    previous = _Level(config.in_channels, tuple(shape))
    for level, blocks in zip(levels, config.n_conv_per_stage):
        block(previous, level)
        walk.live += level.bytes(element, batch=batch)
        for _ in range(blocks - 1):
            block(level, level)
        previous = level
    for s, blocks in enumerate(config.n_conv_per_stage_decoder):
        low, level = levels[-(s + 1)], levels[-(s + 2)]
        m = level.bytes(element, batch=batch)
        walk.at(3 * m)  # up-sampled map and the concatenation, beside the skip and the previous output
        walk.live += 2 * m - m - low.bytes(element, batch=batch)  # + concatenation - skip - previous output
        block(level, level, channels=2 * level.channels)
        walk.live += m
        for _ in range(blocks - 1):
            block(level, level)
        walk.live -= 2 * m  # the concatenation is freed when the stage returns
    return walk.peak


def backbone_peak_bytes(config: SATConfig, plan: BackbonePlan, precision: str = "fp32", device_type: str = "cpu",
                        batch: int = 1, shape: tuple[int, int, int] | None = None) -> int:
    """Peak bytes the backbone forward allocates for one batch of windows (weights and the input not included)."""
    element = 4 if precision == "fp32" else 2
    shape = tuple(shape or config.patch_size)
    if plan.slab_bytes is None:
        return _plain_peak(config, shape, element, device_type, batch)
    return _lean_peak(config, shape, plan, element, device_type, batch)


# ---- a whole run ----------------------------------------------------------------------------------

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
