"""Backbone plans: how SAT's U-Net forward runs ('plain', the module forward, or 'lean' in row slabs) and
how the lean plan sizes its slabs. No torch here: `memory` estimates plans before anything is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

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
