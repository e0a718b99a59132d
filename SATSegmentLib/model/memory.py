"""Backbone memory plans (placeholder, completed below)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackbonePlan:
    """How the backbone forward runs: 'plain' (the module forward) or 'lean' with row slabs of ~`slab_bytes`."""

    name: str = "plain"
    slab_bytes: int | None = None


#: PyTorch's CPU convs use oneDNN only when batch·channels·rows·width of the input exceeds this
#: (`use_mkldnn` in ATen's ConvUtils.h); below it a much slower im2col path runs.
ONEDNN_MIN_ELEMENTS = 20480


def slab_rows(slab_bytes: int, channels: int, plane: int, height: int, inputs: int = 1,
              input_row_elements: int = 0) -> int:
    """Rows per slab so that one slab's inputs and output take about `slab_bytes` (float32).

    At least enough rows that the conv's input (`input_row_elements` = channels · width per row) stays
    on oneDNN's fast path.
    """
    row_bytes = 4 * channels * plane * (1 + inputs)
    fast = -(-(ONEDNN_MIN_ELEMENTS + 1) // input_row_elements) if input_row_elements else 1
    return max(1, min(height, max(fast, slab_bytes // row_bytes)))
