"""Sliding-window SAT inference with memory that does not grow as 8·N·voxels.

Per window (official order, spec §4.5-4.7): cut the patch, zero-pad it at the end, repeat it to 3
channels, run the backbone once (`model.encode_image`), decode every prompt in chunks
(`model.decode`), take the sigmoid and add `prob · g` into the prompt's numerator and `g` into one
shared weight map (`g` = the official float16 Gaussian). A voxel's probability is
numerator / weight, thresholded at > 0.5 in float32, exactly as a dense implementation would do.

Memory: the shared weight map is the only full-volume float buffer. Numerators exist only for the
slab of rows that windows of the current h-row cover (at most patch-height rows): windows run h
slowest, so rows above the current h-row's start are final, get thresholded and are stored as one
bit per voxel per prompt. Additions per voxel happen in the same order as in the dense scheme, so
the result is bit-identical to it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .errors import CancelledError
from .model.device import autocast
from .model.memory import DECODE_CHUNK_BYTES
from .model.plans import BackbonePlan
from .tiling import Window, gaussian_weights, sliding_windows

ProgressCallback = Callable[[str, int, int, str], None]


class FeatureCache:
    """Backbone features of recently used volumes' windows, kept within one byte budget.

    `bind(key)` selects the volume (model, device, preprocessed volume) that `get`, `put`, `len` and `in`
    refer to and makes it the most recently used. Volumes stay cached side by side: when new features do
    not fit, the least recently used other volumes are dropped first, so a server switching between scans
    keeps each one's features while the budget allows. Windows are looked up by their index in the full
    window list, so a follow-up request with new prompts (or a smaller ROI) skips the backbone for cached windows.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.key: Any = None
        self._volumes: OrderedDict[Any, dict[int, Any]] = OrderedDict()  # least recently used first
        self._sizes: dict[Any, int] = {}

    def bind(self, key: Any) -> None:
        self.key = key
        self._volumes.setdefault(key, {})
        self._sizes.setdefault(key, 0)
        self._volumes.move_to_end(key)

    def clear(self) -> None:
        """Drop every volume's features."""
        self._volumes.clear()
        self._sizes.clear()
        if self.key is not None:
            self.bind(self.key)

    @property
    def nbytes(self) -> int:
        return sum(self._sizes.values())

    @property
    def volumes(self) -> int:
        """How many volumes have features cached."""
        return sum(1 for items in self._volumes.values() if items)

    def __contains__(self, index: int) -> bool:
        return index in self._current()

    def __len__(self) -> int:
        return len(self._current())

    def get(self, index: int) -> Any:
        return self._current().get(index)

    def limit(self, max_bytes: int) -> None:
        """Change the cap, dropping least recently used volumes (the bound one last) until the rest fit."""
        self.max_bytes = int(max(0, max_bytes))
        self._evict_for(0)
        if self.nbytes > self.max_bytes:
            self.clear()

    def put(self, index: int, features: Any) -> bool:
        """Keep `features` (in host memory) for the bound volume if they fit in the budget, once older
        volumes are dropped; returns whether they were kept."""
        size = int(features.nbytes)
        items = self._current()
        if index in items or not self._evict_for(size):
            return False
        items[index] = features.to("cpu")  # host memory: a GPU needs its memory for the next windows
        self._sizes[self.key] += size
        return True

    def _current(self) -> dict[int, Any]:
        return self._volumes.get(self.key, {}) if self.key is not None else {}

    def _evict_for(self, size: int) -> bool:
        """Drop least recently used volumes other than the bound one until `size` more bytes fit; whether they do."""
        for key in [k for k in self._volumes if k != self.key]:
            if self.nbytes + size <= self.max_bytes:
                break
            del self._volumes[key], self._sizes[key]
        return self.nbytes + size <= self.max_bytes


@dataclass
class BlendedMasks:
    """Processed-space masks (prob > 0.5), one bit per voxel per prompt, rows of (W·D) bits."""

    shape: tuple[int, int, int]
    bits: np.ndarray
    backbone_seconds: list[float] = field(default_factory=list)
    windows_from_cache: int = 0     # windows whose backbone features came from the feature cache
    windows_computed: int = 0       # windows whose backbone ran
    timings: dict[str, float] = field(default_factory=dict)

    def mask(self, n: int) -> np.ndarray:
        """Prompt `n`'s mask as uint8 (H, W, D)."""
        h, w, d = self.shape
        return np.unpackbits(self.bits[n], axis=1, count=w * d).reshape(h, w, d)


def run_sliding_window(
    volume: np.ndarray,
    model: torch.nn.Module,
    queries: torch.Tensor,
    patch_size: Sequence[int],
    *,
    windows: Sequence[Window] | None = None,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    chunk_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    feature_cache: FeatureCache | None = None,
    plan: BackbonePlan | None = None,
) -> BlendedMasks:
    """Segment a processed (H, W, D) float32 volume for N prompt embeddings `queries` (N, Q).

    Args:
        volume: the processed volume (H, W, D), float32.
        model: anything with `encode_image(windows, plan) -> features` and `decode(features, queries) -> logits`
            (a `SATModel`).
        queries: prompt embeddings (N, Q); prompts never interact, so N only scales the decoding.
        patch_size: window size (H, W, D) of the model.
        windows: a subset of `sliding_windows(volume.shape, patch_size)` (for an ROI); voxels no window
            covers stay 0. Default: all windows.
        device, precision: where the model runs and its autocast ('fp32', 'fp16' on CUDA, 'bf16').
        chunk_size: prompts decoded at once (default: as many as fit in `memory.DECODE_CHUNK_BYTES`).
        progress, cancel: `progress(stage, current, total, message)` after each window; `cancel` is checked
            between windows and prompt chunks.
        feature_cache: backbone features by window index, reused and filled (host memory).
        plan: how the backbone runs (`model.memory`); every plan gives the same features.

    Returns:
        `BlendedMasks`: one bit per processed voxel and prompt, with timings and the cache hits.

    Raises:
        errors.CancelledError: `cancel` was set.
    """
    device = torch.device(device)
    patch = tuple(int(p) for p in patch_size)
    shape = tuple(int(n) for n in volume.shape)
    windows = list(sliding_windows(shape, patch) if windows is None else windows)
    n_prompts = int(queries.shape[0])
    chunk = chunk_size or max(1, DECODE_CHUNK_BYTES // (4 * int(np.prod(patch))))
    queries = queries.to(device)
    gauss = torch.from_numpy(gaussian_weights(patch))
    blender = _SlabBlender(shape, n_prompts, patch[0])
    result = BlendedMasks(shape, blender.bits)
    timings = {"backbone": 0.0, "decode": 0.0, "blend": 0.0}

    for i, window in enumerate(windows):
        check_cancel(cancel)
        blender.start_row(window.start[0])
        extent = window.extent
        tic = time.perf_counter()
        features = feature_cache.get(window.index) if feature_cache is not None else None
        with torch.inference_mode(), autocast(device, precision):
            if features is None:
                features = model.encode_image(_patch_tensor(volume, window, patch, device), plan)
                result.windows_computed += 1
                if feature_cache is not None:
                    feature_cache.put(window.index, features)
            else:
                features = features.to(device)
                result.windows_from_cache += 1
            result.backbone_seconds.append(time.perf_counter() - tic)
            timings["backbone"] += result.backbone_seconds[-1]
            g = gauss[: extent[0], : extent[1], : extent[2]].to(device)
            for first in range(0, n_prompts, chunk):
                check_cancel(cancel)
                tic = time.perf_counter()
                logits = model.decode(features, queries[first:first + chunk])[0]
                weighted = logits[:, : extent[0], : extent[1], : extent[2]].float().sigmoid_().mul_(g)
                weighted = weighted.cpu().numpy()
                timings["decode"] += time.perf_counter() - tic
                tic = time.perf_counter()
                blender.add(window, weighted, first)
                timings["blend"] += time.perf_counter() - tic
        del features
        tic = time.perf_counter()
        blender.add_weight(window, g.cpu().numpy())
        timings["blend"] += time.perf_counter() - tic
        if progress is not None:
            progress("inference", i + 1, len(windows), f"window {i + 1}/{len(windows)}")
    check_cancel(cancel)
    tic = time.perf_counter()
    blender.finish()
    timings["blend"] += time.perf_counter() - tic
    result.timings = timings
    return result


class _SlabBlender:
    """Gaussian blending with one shared weight map and per-prompt numerators for an h-slab only."""

    def __init__(self, shape: tuple[int, int, int], n_prompts: int, slab_rows: int) -> None:
        h, w, d = shape
        self.shape = shape
        self.weight = np.zeros(shape, dtype=np.float32)
        self.bits = np.zeros((n_prompts, h, (w * d + 7) // 8), dtype=np.uint8)
        self.numerator = np.zeros((n_prompts, min(slab_rows, h), w, d), dtype=np.float32)
        self.top = 0  # volume row of numerator row 0; rows above it are final

    def start_row(self, h_start: int) -> None:
        """Windows starting at `h_start` never touch rows above it: finalise those and shift the slab."""
        if h_start <= self.top:
            return
        rows = self.numerator.shape[1]
        self._finalise(self.top, min(h_start, self.top + rows))  # rows below the slab were never touched
        shift = h_start - self.top
        if shift < rows:
            self.numerator[:, : rows - shift] = self.numerator[:, shift:]
            self.numerator[:, rows - shift:] = 0
        else:
            self.numerator[:] = 0
        self.top = h_start

    def add(self, window: Window, weighted: np.ndarray, first_prompt: int) -> None:
        (h0, w0, d0), (h1, w1, d1) = window.start, window.stop
        prompts = slice(first_prompt, first_prompt + weighted.shape[0])
        self.numerator[prompts, h0 - self.top: h1 - self.top, w0:w1, d0:d1] += weighted

    def add_weight(self, window: Window, g: np.ndarray) -> None:
        (h0, w0, d0), (h1, w1, d1) = window.start, window.stop
        self.weight[h0:h1, w0:w1, d0:d1] += g

    def finish(self) -> None:
        self._finalise(self.top, min(self.top + self.numerator.shape[1], self.shape[0]))

    def _finalise(self, start: int, stop: int) -> None:
        if stop <= start:
            return
        n, _, w, d = self.numerator.shape
        weight = self.weight[start:stop]
        numerator = self.numerator[:, start - self.top: stop - self.top]
        prob = np.divide(numerator, weight, out=np.zeros_like(numerator), where=weight > 0)
        self.bits[:, start:stop] = np.packbits((prob > 0.5).reshape(n, stop - start, w * d), axis=-1)


def _patch_tensor(volume: np.ndarray, window: Window, patch: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """The window's voxels, zero-padded at the end to the patch size, as (1, 3, H, W, D)."""
    (h0, w0, d0), (h1, w1, d1) = window.start, window.stop
    padded = torch.zeros(patch, dtype=torch.float32)
    padded[: h1 - h0, : w1 - w0, : d1 - d0] = torch.from_numpy(volume[h0:h1, w0:w1, d0:d1])
    return padded.to(device)[None, None].repeat(1, 3, 1, 1, 1)


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise `errors.CancelledError` if the user asked to stop."""
    if cancel is not None and cancel.is_set():
        raise CancelledError("Segmentation cancelled.", "Nothing was written; start again when ready.")
