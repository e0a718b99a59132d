"""Sliding-window positions and the Gaussian blending weights of the official SAT engine (spec §4.5, §4.7)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Window:
    """One patch: its position in the official order and its [start, stop) box in the volume."""

    index: int
    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def extent(self) -> tuple[int, int, int]:
        """Valid (unpadded) size of the patch; smaller than the patch only where the volume is."""
        return tuple(b - a for a, b in zip(self.start, self.stop))


def window_starts(length: int, patch: int) -> list[int]:
    """Official start positions along one axis: stride patch/2, last window shifted to end at `length`."""
    stride = patch // 2
    count = max(math.ceil(length / stride) - 1, 1)
    starts = []
    for i in range(count):
        start = i * stride
        if start + patch > length:
            start = max(length - patch, 0)
        starts.append(start)
    return starts


def sliding_windows(shape: Sequence[int], patch: Sequence[int]) -> list[Window]:
    """All windows of a (H, W, D) volume in the official order: h slowest, d fastest."""
    axes = [window_starts(n, p) for n, p in zip(shape, patch)]
    windows = []
    for index, start in enumerate(product(*axes)):
        stop = tuple(min(s + p, n) for s, p, n in zip(start, patch, shape))
        windows.append(Window(index, tuple(start), stop))
    return windows


def windows_touching(windows: Sequence[Window], start: Sequence[int], stop: Sequence[int]) -> list[Window]:
    """The windows that overlap the box [start, stop) (used to run only the windows an ROI needs)."""
    return [w for w in windows if all(a < q and p < b for a, b, p, q in zip(w.start, w.stop, start, stop))]


def gaussian_weights(patch: Sequence[int]) -> np.ndarray:
    """The official blending map as float32 holding float16 values.

    10·Π exp(−½((i−c)/σ)²) with c = size//2 and σ = size/8 per axis, cast to float16, and entries that
    underflow to 0 set to the smallest non-zero value of the map (6e-8 for 288x288x96).
    """
    factors = []
    for size in patch:
        i = np.arange(size, dtype=np.float64)
        factors.append(np.exp(-0.5 * ((i - size // 2) / (size / 8)) ** 2))
    g = 10.0 * factors[0][:, None, None] * factors[1][None, :, None] * factors[2][None, None, :]
    g16 = g.astype(np.float16)
    zeros = g16 == 0
    if zeros.any():
        g16[zeros] = g16[~zeros].min()
    return g16.astype(np.float32)
