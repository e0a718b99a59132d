"""Row-slab building blocks of the lean backbone: convolutions over row ranges, in place, with
instance-norm statistics gathered slab by slab.

A feature map is (B, C, H, W, D), stored channels-last so that a range of rows along H (a *slab*)
is one contiguous block. A 3×3×3 convolution of output rows [a, b) needs input rows
[a·s − 1, (b − 1)·s + 2), so a map can be convolved slab by slab with a one-row halo, and (stride 1,
same channel count) written back into its own buffer: the input rows the next slab still needs are
kept aside before a slab overwrites them. Instance norm needs statistics of the whole map, so a
conv's output is stored raw and normalised lazily by its reader (`MapSource`) or in place at the end
(`finalize_`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from .plans import slab_ranges

NEGATIVE_SLOPE = 0.01  # nn.LeakyReLU's default, as in the official blocks
#: Maps are stored channels-last: rows along H are then contiguous, and oneDNN's 3D convs need no reorder.
CHANNELS_LAST = torch.channels_last_3d


class RowSource(Protocol):
    """Anything that yields rows [first, last) of a (B, C, H, W, D) map; rows outside [0, H) are zeros."""

    height: int

    def rows(self, first: int, last: int) -> torch.Tensor: ...


def _channels_rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, W, D) channels-last → its (B, h·W·D, C) view (a copy only if `x` is not channels-last)."""
    return x.permute(0, 2, 3, 4, 1).reshape(x.shape[0], -1, x.shape[1])


class Moments:
    """Per-(batch, channel) mean and variance accumulated over slabs (Chan et al.'s pairwise update, float64)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, slab: torch.Tensor) -> None:
        values = _channels_rows(slab).float()
        n = values.shape[1]
        mean = values.sum(1, keepdim=True) / n
        centred = (values - mean).square_()  # centred on the slab's mean: no cancellation in float32
        m2 = centred.sum(1).double()
        mean = mean[:, 0].double()
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
        self.count = total

    def affine(self, norm: nn.InstanceNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) with norm(x) = x·scale + shift, float32, shaped (B, C, 1, 1, 1)."""
        var = self.m2 / self.count
        scale = norm.weight.double() / torch.sqrt(var + norm.eps)
        shift = norm.bias.double() - self.mean * scale
        shape = (*scale.shape, 1, 1, 1)
        return scale.float().view(shape), shift.float().view(shape)


@dataclass
class PendingNorm:
    """Instance norm + LeakyReLU still to be applied to a raw conv output."""

    scale: torch.Tensor
    shift: torch.Tensor

    def apply_into(self, raw: torch.Tensor, out: torch.Tensor) -> None:
        """out = LeakyReLU(raw · scale + shift), computed in float32 and stored in `out`'s dtype."""
        if out.dtype == torch.float32:
            torch.addcmul(self.shift, raw, self.scale, out=out)
            F.leaky_relu_(out, NEGATIVE_SLOPE)
        else:
            out.copy_(F.leaky_relu_(torch.addcmul(self.shift, raw.float(), self.scale), NEGATIVE_SLOPE))


def empty_rows(like: torch.Tensor, rows: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An uninitialised channels-last map with `like`'s batch, channels and plane and `rows` rows."""
    b, c, _, w, d = like.shape
    return torch.empty((b, c, rows, w, d), dtype=dtype or like.dtype, device=like.device, memory_format=CHANNELS_LAST)


def _zero_padded(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """`x` with `before` zero rows above and `after` below (a copy only when there is padding)."""
    if not before and not after:
        return x
    out = empty_rows(x, before + x.shape[2] + after)
    out[:, :, :before].zero_()
    out[:, :, before + x.shape[2]:].zero_()
    out[:, :, before:before + x.shape[2]] = x
    return out


class MapSource:
    """Rows of a stored map, normalised on the fly when a norm is pending.

    When a conv writes its output back into this map's buffer, `keep(start, stop)` saves the
    original rows the next slab still needs before they are overwritten; `rows` serves them from there.
    """

    def __init__(self, buffer: torch.Tensor, pending: PendingNorm | None = None) -> None:
        self.buffer = buffer
        self.pending = pending
        self.height = buffer.shape[2]
        self._kept: torch.Tensor | None = None
        self._kept_start = 0

    def keep(self, start: int, stop: int) -> None:
        self._kept = self.buffer[:, :, start:stop].clone(memory_format=CHANNELS_LAST) if stop > start else None
        self._kept_start = start

    def rows(self, first: int, last: int) -> torch.Tensor:
        lo, hi = max(first, 0), min(last, self.height)
        parts = self._raw_parts(lo, hi)
        if self.pending is None and len(parts) == 1:
            return _zero_padded(parts[0], lo - first, last - hi)
        out = empty_rows(self.buffer, last - first, torch.float32 if self.pending is not None else self.buffer.dtype)
        out[:, :, :lo - first].zero_()
        out[:, :, hi - first:].zero_()
        row = lo - first
        for part in parts:
            target = out[:, :, row:row + part.shape[2]]
            if self.pending is not None:
                self.pending.apply_into(part, target)
            else:
                target.copy_(part)
            row += part.shape[2]
        return out

    def _raw_parts(self, start: int, stop: int) -> list[torch.Tensor]:
        """Views of the stored rows [start, stop): kept rows first, then the buffer's."""
        parts = []
        if self._kept is not None:
            k0, k1 = self._kept_start, self._kept_start + self._kept.shape[2]
            if start < k1 and k0 < stop:
                parts.append(self._kept[:, :, max(start, k0) - k0:min(stop, k1) - k0])
                start = min(stop, k1)
        if start < stop:
            parts.append(self.buffer[:, :, start:stop])
        return parts


class TransposedConvSource:
    """Rows of `ConvTranspose3d(kernel = stride = f)(low)`, computed from the low-resolution rows they come from."""

    def __init__(self, low: RowSource, up: nn.ConvTranspose3d) -> None:
        self.low, self.up = low, up
        self.factor = up.stride[0]
        self.height = low.height * self.factor

    def rows(self, first: int, last: int) -> torch.Tensor:
        f = self.factor
        lo, hi = max(first, 0), min(last, self.height)
        low_first, low_last = lo // f, -(-hi // f)
        out = self.up(self.low.rows(low_first, low_last))
        out = out[:, :, lo - low_first * f: hi - low_first * f]
        return _zero_padded(out, lo - first, last - hi)


def conv_rows(source: RowSource, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, start: int,
              stop: int) -> torch.Tensor:
    """Output rows [start, stop) of a 'same'-padded conv over `source` (zeros beyond the map's ends)."""
    kernel = weight.shape[2]
    pad = (kernel - 1) // 2
    x = source.rows(start * stride - pad, (stop - 1) * stride - pad + kernel)
    return F.conv3d(x, weight, bias, stride=stride, padding=(0, pad, pad))


def conv_pass(sources: list[tuple[RowSource, torch.Tensor]], conv: nn.Conv3d, out_height: int, slab_rows: int,
              out: torch.Tensor | None = None, in_place: MapSource | None = None) -> tuple[torch.Tensor, Moments]:
    """Run `conv` (its weight split over several inputs, summed) slab by slab; returns (raw output, statistics).

    The output goes into `out` (allocated on the first slab when None). With `in_place`, `out` is that
    source's buffer: before a slab is written, the rows the next slab still reads are kept aside.
    Partial sums over several inputs are added in float32, so half-precision runs round once, as one conv would.
    """
    stride = conv.stride[0]
    pad = (conv.kernel_size[0] - 1) // 2
    moments = Moments()
    for start, stop in slab_ranges(out_height, slab_rows):
        slab = None
        for i, (source, weight) in enumerate(sources):
            part = conv_rows(source, weight, conv.bias if i == 0 else None, stride, start, stop)
            if slab is None:
                dtype = part.dtype
                slab = part if len(sources) == 1 else part.float()
            else:
                slab.add_(part)
            del part
        moments.update(slab)
        if out is None:
            out = empty_rows(slab, out_height, dtype)
        if in_place is not None:
            in_place.keep(max(stop - pad, 0), stop)
        out[:, :, start:stop] = slab
        del slab
    return out, moments


def avg_pool_blocks(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """`F.avg_pool3d(x, kernel)` for sizes divisible by `kernel`; channels-last maps are summed in place of a copy."""
    if kernel == 1:
        return x
    if not x.is_contiguous(memory_format=CHANNELS_LAST):
        return F.avg_pool3d(x, kernel)
    b, c, h, w, d = x.shape
    blocks = x.permute(0, 2, 3, 4, 1).reshape(b, h // kernel, kernel, w // kernel, kernel, d // kernel, kernel, c)
    pooled = blocks.sum(2).sum(3).sum(4) / kernel ** 3
    return pooled.permute(0, 4, 1, 2, 3)


def finalize_(buffer: torch.Tensor, pending: PendingNorm, slab_rows: int) -> torch.Tensor:
    """Apply the pending norm + LeakyReLU to `buffer` in place, slab by slab; returns `buffer`."""
    for start, stop in slab_ranges(buffer.shape[2], slab_rows):
        rows = buffer[:, :, start:stop]
        pending.apply_into(rows, rows)
    return buffer
