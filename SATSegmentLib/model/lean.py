"""The lean forward of SAT's U-Net: the same modules, weights and maths as `PlainConvUNet.forward`,
executed so that each map is stored once.

* Every 3×3×3 conv runs in row slabs (`slabs.conv_pass`); a stride-1 conv writes its output back
  into its input's buffer, so a stage's convs share one buffer.
* Instance norm + LeakyReLU are applied lazily: a conv's raw output is stored with its statistics,
  and the next conv normalises the rows it reads; the stage's last conv is normalised in place.
* The decoder never concatenates: conv(cat(up, skip)) = conv_up(up) + conv_skip(skip), with the
  transposed conv computed for the rows a slab needs; its output overwrites the skip's buffer.

So the full-resolution skip's buffer becomes the pixel embedding, and the peak is about one
full-resolution map plus the smaller skips and one slab's temporaries (model/memory.py estimates it).
"""

from __future__ import annotations

import torch
from torch import nn

from .plans import slab_rows
from .slabs import CHANNELS_LAST, MapSource, PendingNorm, TransposedConvSource, conv_pass, finalize_
from .unet import Decoder, Encoder


def lean_encoder(encoder: Encoder, x: torch.Tensor, slab_bytes: int) -> list[torch.Tensor]:
    """`encoder(x)`: the output of every stage, full resolution first."""
    skips: list[torch.Tensor] = []
    previous = x.contiguous(memory_format=CHANNELS_LAST)
    for stage in encoder.stages:
        blocks = stage[0].convs
        first = blocks[0]
        height = -(-previous.shape[2] // first.conv.stride[0])
        rows = _rows(previous, first.conv.out_channels, first.conv.stride[0], slab_bytes, height)
        buffer, moments = conv_pass([(MapSource(previous), first.conv.weight)], first.conv, height, rows)
        previous = _rest_of_stage(blocks, buffer, PendingNorm(*moments.affine(first.norm)), slab_bytes)
        skips.append(previous)
    return skips


def lean_decoder(decoder: Decoder, skips: list[torch.Tensor], slab_bytes: int) -> torch.Tensor:
    """`decoder(skips)`: the full-resolution output; `skips` is consumed and its buffers reused."""
    low = skips.pop()
    for up, stage in zip(decoder.transpconvs, decoder.stages):
        skip = skips.pop()
        first = stage.convs[0]
        split = up.out_channels  # cat order (up, skip): the first input channels belong to `up`
        weight = first.conv.weight
        skip_source = MapSource(skip)
        sources = [(TransposedConvSource(MapSource(low), up), weight[:, :split].contiguous()),
                   (skip_source, weight[:, split:].contiguous())]
        rows = _rows(skip, first.conv.out_channels, 1, slab_bytes, skip.shape[2], inputs=2)
        buffer, moments = conv_pass(sources, first.conv, skip.shape[2], rows, out=skip, in_place=skip_source)
        del sources, skip_source, low, skip
        low = _rest_of_stage(stage.convs, buffer, PendingNorm(*moments.affine(first.norm)), slab_bytes)
    return low


def _rest_of_stage(blocks: nn.Sequential, buffer: torch.Tensor, pending: PendingNorm, slab_bytes: int) -> torch.Tensor:
    """Blocks 1.. of a stage, in place on `buffer`; then the last norm + LeakyReLU in place."""
    rows = _rows(buffer, buffer.shape[1], 1, slab_bytes, buffer.shape[2])
    for block in list(blocks)[1:]:
        source = MapSource(buffer, pending)
        buffer, moments = conv_pass([(source, block.conv.weight)], block.conv, buffer.shape[2], rows,
                                    out=buffer, in_place=source)
        pending = PendingNorm(*moments.affine(block.norm))
    return finalize_(buffer, pending, rows)


def _rows(source: torch.Tensor, out_channels: int, stride: int, slab_bytes: int, height: int, inputs: int = 1) -> int:
    """Slab height of a conv pass reading maps shaped like `source` (for a decoder conv: its skip)."""
    plane = -(-source.shape[3] // stride) * -(-source.shape[4] // stride)
    return slab_rows(slab_bytes, source.shape[1], source.shape[3], out_channels, plane, height, stride, inputs)
