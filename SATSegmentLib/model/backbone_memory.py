"""Peak memory of one backbone forward, walked from the model config: the same stages, slabs and
temporaries as the executors (`unet.PlainConvUNet.forward` for 'plain', `lean.py` for 'lean').

Testing/model/test_model_memory.py checks it against the allocations PyTorch's profiler records.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import SATConfig
from . import plans
from .plans import BackbonePlan, largest_slab, slab_rows


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
    return device_type == "cpu" and element == 4 and batch * channels * rows * width <= plans.ONEDNN_MIN_ELEMENTS


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
