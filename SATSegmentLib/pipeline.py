"""The public API: segment a scan with text prompts and get one mask per prompt on the scan's own grid.

    from SATSegmentLib.pipeline import segment
    result = segment("ct.nii.gz", ["liver", "spleen"], "ct", model="nano")
    sitk.WriteImage(result.to_sitk("liver"), "liver.nii.gz")

`Segmenter` keeps a loaded model and caches between calls (the worker holds one): the last
preprocessed volume and, within a byte budget, the backbone features of its windows, so new prompts
on the same scan skip preprocessing and the backbone.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .imageio import image_fingerprint, ras_affine_of, read_image, resolve_modality, validate_image
from .inference import BlendedMasks, FeatureCache, ProgressCallback, check_cancel, run_sliding_window
from .model.memory import RunEstimate, VolumeSize
from .model.plans import BackbonePlan
from .preprocess import (
    PreprocessedVolume,
    ProcessedGrid,
    check_orientation,
    mask_to_input_grid,
    preprocess,
    roi_input_mask,
    roi_to_processed_box,
)
from .tiling import sliding_windows, windows_touching
from .vocabulary import normalize_modality


@dataclass
class SegmentationResult:
    """Masks (uint8, SimpleITK z, y, x order) on the input grid, keyed by prompt, plus geometry and timings."""

    masks: dict[str, np.ndarray]
    reference: sitk.Image
    grid: ProcessedGrid
    processed: BlendedMasks
    modality: str
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)  # what this call took from the Segmenter's caches

    def to_sitk(self, prompt: str) -> sitk.Image:
        """The prompt's mask as a uint8 image with the input's origin, spacing and direction."""
        image = sitk.GetImageFromArray(self.masks[prompt])
        image.CopyInformation(self.reference)
        return image

    def volume_ml(self, prompt: str) -> float:
        """Volume of the prompt's mask in millilitres."""
        return float(self.masks[prompt].sum(dtype=np.int64)) * float(np.prod(self.reference.GetSpacing())) / 1000.0

    def processed_mask(self, prompt: str) -> np.ndarray:
        """The mask in SAT's processed grid (H, W, D), as the official code would write it."""
        return self.processed.mask(list(self.masks).index(prompt))


class Segmenter:
    """A loaded SAT model plus the caches that make repeated requests on one scan fast."""

    def __init__(self, loaded_sat: Any = "nano", device: str = "auto", feature_cache_bytes: int = 0,
                 precision: str = "auto", max_memory: int | str | None = None) -> None:
        from .budget import parse_size, resolve_precision

        self.loaded = load_model(loaded_sat, device)
        self.device = self.loaded.device
        self.precision = resolve_precision(precision, self.device.type)
        self.max_memory = parse_size(max_memory)
        self.feature_cache = FeatureCache(feature_cache_bytes)
        self._volume_key: Any = None
        self._volume: tuple[sitk.Image, dict[str, Any], PreprocessedVolume] | None = None

    def segment(
        self,
        image: str | Path | sitk.Image,
        prompts: Sequence[str],
        modality: str,
        orientation: str = "RAS",
        roi: Sequence[float] | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        plan: BackbonePlan | None = None,
    ) -> SegmentationResult:
        """Segment `image` for each prompt; see the module docstring and docs/python-api.md.

        `metadata`: for an `image` already read by `imageio.read_image`, the metadata it returned
        (the image is then used as is, keyed on its content fingerprint, instead of being read again).
        `plan`: how the backbone runs; by default the fastest plan that fits the free memory and
        `max_memory` (raises `errors.OutOfMemoryError` when none does). Every plan gives the same masks.

        Raises `errors.InputError` (image, prompts, ROI), `errors.OutOfMemoryError`, `errors.CancelledError`.
        """
        terms = _terms(prompts)
        orientation = check_orientation(orientation)
        timings: dict[str, float] = {}
        _stage(progress, cancel, "load", "reading the image")
        tic = time.perf_counter()
        source, metadata = (image, metadata) if metadata is not None else _read(image)
        timings["load"] = time.perf_counter() - tic
        modality = resolve_modality(modality, metadata)

        _stage(progress, cancel, "preprocess", "reorienting, resampling, cropping, normalising")
        tic = time.perf_counter()
        volume_key = (metadata["identity"], orientation, modality == "ct")
        volume_reused = volume_key == self._volume_key
        if not volume_reused:
            self._volume = None  # free the previous volume before making the next
            self._volume = (source, metadata, preprocess(source, modality, orientation, metadata["ras_affine"]))
            self._volume_key = volume_key
        source, metadata, processed = self._volume
        grid = processed.grid
        timings["preprocess"] = time.perf_counter() - tic

        _stage(progress, cancel, "embed", "encoding the prompts")
        tic = time.perf_counter()
        text_modality = normalize_modality(modality)
        embeddings_reused = sum(self.loaded.embeddings.get(t, text_modality) is not None for t in terms.values())
        queries = self.loaded.embed(list(terms.values()), text_modality)
        timings["embed"] = time.perf_counter() - tic

        if plan is None:
            plan = self.plan_for(len(terms), VolumeSize(math.prod(grid.input_size), grid.resampled_shape)).plan
        patch = tuple(self.loaded.config.patch_size)
        windows = sliding_windows(grid.shape, patch)
        if roi is not None:
            windows = windows_touching(windows, *roi_to_processed_box(roi, grid))
        self.feature_cache.bind((volume_key, self.loaded.fingerprint, str(self.device), self.precision))
        blended = run_sliding_window(
            processed.array, self.loaded.model, queries, patch, windows=windows, device=self.device,
            precision=self.precision, progress=progress, cancel=cancel, feature_cache=self.feature_cache, plan=plan,
        )
        timings.update(blended.timings)

        tic = time.perf_counter()
        inside = roi_input_mask(roi, grid) if roi is not None else None
        masks = {}
        for n, prompt in enumerate(terms):
            _stage(progress, cancel, "map_back", f"mapping {prompt!r} onto the input grid", n, len(terms))
            masks[prompt] = _map_back(blended.mask(n), grid, inside)
        timings["map_back"] = time.perf_counter() - tic
        check_cancel(cancel)
        cache = {"preprocessed_volume": volume_reused, "backbone_windows_reused": blended.windows_from_cache,
                 "backbone_windows_computed": blended.windows_computed,
                 "backbone_skipped": blended.windows_computed == 0 and blended.windows_from_cache > 0,
                 "text_embeddings_reused": embeddings_reused}
        return SegmentationResult(masks, source, grid, blended, modality, timings, list(metadata.get("notes", [])), cache)


    def plan_for(self, prompts: int, volume: VolumeSize | None = None) -> RunEstimate:
        """The estimate of the fastest backbone plan that fits this Segmenter's device and `max_memory`."""
        from .budget import plan_run

        return plan_run(self.loaded.config, self.device, self.precision, prompts, self.max_memory, volume,
                        device_requested=str(self.device), reclaimable=self.feature_cache.nbytes).estimate


def segment(
    image: str | Path | sitk.Image,
    prompts: Sequence[str],
    modality: str,
    model: Any = "nano",
    device: str = "auto",
    orientation: str = "RAS",
    roi: Sequence[float] | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    precision: str = "auto",
    max_memory: int | str | None = None,
) -> SegmentationResult:
    """Segment `image` (path or SimpleITK.Image) for each prompt; masks land on the input's grid.

    `model` is a registry name ('nano', 'pro'), a model folder or a `LoadedSAT`; `roi` an optional
    box (x0, y0, z0, x1, y1, z1) in RAS mm outside which masks are 0 and no window runs.
    `precision` 'auto' is fp16 autocast on CUDA (as the official model) and fp32 elsewhere;
    `max_memory` ('4.5GB' or bytes) caps the memory the run may use (default: what is free).
    """
    segmenter = Segmenter(model, device, feature_cache_bytes=0, precision=precision, max_memory=max_memory)
    return segmenter.segment(image, prompts, modality, orientation, roi, progress, cancel)


def load_model(model: Any, device: str = "auto") -> Any:
    """A `LoadedSAT` from a LoadedSAT (returned as is), a model folder, or a registry name ('nano', 'pro')."""
    from .model import LoadedSAT, load_model_folder

    if isinstance(model, LoadedSAT):
        return model
    folder = Path(model)
    if not folder.is_dir():
        if isinstance(model, str) and "/" not in model and "\\" not in model:
            from .modelstore import path_for  # registry names live in the model store

            folder = path_for(model)
        else:
            raise InputError(f"Model folder {folder} does not exist.", "Pass 'nano', 'pro' or the folder of an installed model.")
    return load_model_folder(folder, device)


def _terms(prompts: Sequence[str]) -> dict[str, str]:
    """Prompt as given → lower-case term for the text encoder (duplicates dropped, order kept)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    terms = {}
    for prompt in prompts:
        key = str(prompt).strip()
        if not key:
            raise InputError("An empty prompt was given.", "Type an anatomy name, e.g. 'liver'.")
        terms.setdefault(key, key.lower())
    if not terms:
        raise InputError("No prompts given.", "Give at least one anatomy name, e.g. 'liver'.")
    return terms


def _read(image: str | Path | sitk.Image) -> tuple[sitk.Image, dict[str, Any]]:
    if isinstance(image, sitk.Image):
        checked = validate_image(image, source="the given image")
        affine = ras_affine_of(checked)
        return checked, {"identity": image_fingerprint(checked, affine), "modality": None, "notes": [], "ras_affine": affine}
    return read_image(image)


def _map_back(mask: np.ndarray, grid: ProcessedGrid, inside: np.ndarray | None) -> np.ndarray:
    if not mask.any():
        return np.zeros(grid.input_size[::-1], dtype=np.uint8)
    mapped = mask_to_input_grid(mask, grid)
    if inside is not None:
        mapped[~inside] = 0
    return mapped


def _stage(progress: ProgressCallback | None, cancel: threading.Event | None, stage: str, message: str,
           current: int = 0, total: int = 1) -> None:
    check_cancel(cancel)
    if progress is not None:
        progress(stage, current, total, message)

