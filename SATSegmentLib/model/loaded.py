"""`LoadedSAT`: a SAT model ready for inference, with a lazily loaded text encoder and an embedding cache.

A model folder holds `sat_config.json`, `segmentation.pth` and `text_encoder.pth` (official layouts).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Iterable

import torch

from ..errors import ModelError
from ..userdirs import user_home
from . import checkpoint
from .config import SATConfig
from .device import resolve_device
from .embedding_cache import EmbeddingCache
from .fingerprint import fingerprint as files_fingerprint
from .sat import SATModel
from .text_encoder import TextEncoder, modality_code

SEGMENTATION_FILE = "segmentation.pth"
TEXT_ENCODER_FILE = "text_encoder.pth"
EMBEDDINGS_DIR = "text_embeddings"


def default_cache_dir() -> Path:
    """`cache/` in the per-user folder (SATSEGMENT_HOME or the platform's cache folder, as the model store)."""
    return user_home() / "cache"


def _writable_dir(folder: Path) -> Path | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


class LoadedSAT:
    """Segmentation model on `device` plus text path; `embed` serves prompts from the cache when it can."""

    def __init__(self, config: SATConfig, model: SATModel, device: torch.device, segmentation_path: Path,
                 text_encoder_path: Path, cache_dir: Path | None) -> None:
        self.config = config
        self.model = model
        self.device = device
        self.segmentation_path = segmentation_path
        self.text_encoder_path = text_encoder_path
        self.cache_dir = cache_dir
        self.fingerprint = files_fingerprint([segmentation_path, text_encoder_path], cache_dir)
        self.embeddings = EmbeddingCache(self.fingerprint, cache_dir / EMBEDDINGS_DIR if cache_dir else None)
        self._text_encoder: TextEncoder | None = None
        self._lock = threading.Lock()

    @property
    def text_encoder_loaded(self) -> bool:
        return self._text_encoder is not None

    @property
    def text_encoder(self) -> TextEncoder:
        """The text encoder, loaded (strictly, on `device`) the first time it is needed."""
        with self._lock:
            if self._text_encoder is None:
                state = checkpoint.text_encoder_state(self.text_encoder_path, self.config)
                encoder = TextEncoder(self.config)
                encoder.load_state_dict(state, strict=True)
                self._text_encoder = encoder.to(self.device).eval()
            return self._text_encoder

    def release_text_encoder(self) -> None:
        """Free the text encoder (~440 MB); the next uncached prompt loads it again."""
        with self._lock:
            self._text_encoder = None

    def embed(self, terms: Iterable[str], modality: str) -> torch.Tensor:
        """Query embeddings (N, query_dim) float32 on `device`; cached prompts skip the text encoder."""
        terms = list(terms)
        modality_code(modality)  # validate before any work
        missing = sorted({t for t in terms if self.embeddings.get(t, modality) is None})
        if missing:
            with torch.no_grad():
                fresh = self.text_encoder(missing, modality)
            for term, emb in zip(missing, fresh):
                self.embeddings.put(term, modality, emb)
            self.embeddings.save()
        if not terms:
            return torch.zeros((0, self.config.query_dim), device=self.device)
        return torch.stack([self.embeddings.get(t, modality) for t in terms]).to(self.device)


def _build_model(config: SATConfig, seg_path: Path, device: torch.device) -> SATModel:
    state = checkpoint.segmentation_state(seg_path, config)
    with torch.device("meta"):  # skip the random init: every weight comes from the checkpoint
        model = SATModel(config)
    model = model.to_empty(device=device)
    model.load_state_dict(state, strict=True)
    model.reset_positional_encoding()
    return model.eval()


def load_official_checkpoints(checkpoint_path: str | Path, text_encoder_checkpoint: str | Path,
                              variant: str = "nano", device: str | torch.device = "auto",
                              cache_dir: str | Path | None = None) -> LoadedSAT:
    """Load the released `.pth` pair of SAT-Nano or SAT-Pro (text encoder checked now, built on first use)."""
    return _load(SATConfig.for_variant(variant), Path(checkpoint_path), Path(text_encoder_checkpoint), device,
                 Path(cache_dir) if cache_dir is not None else default_cache_dir())


def load_model_folder(path: str | Path, device: str | torch.device = "auto",
                      cache_dir: str | Path | None = None) -> LoadedSAT:
    """Load a model folder; its embedding cache lives in the folder unless `cache_dir` is given."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist",
                         hint="install the model (satsegment models) or pass the path of an installed model folder")
    config = SATConfig.load(folder)
    return _load(config, folder / SEGMENTATION_FILE, folder / TEXT_ENCODER_FILE, device,
                 Path(cache_dir) if cache_dir is not None else folder)


def _load(config: SATConfig, seg_path: Path, text_path: Path, device: str | torch.device,
          cache_dir: Path) -> LoadedSAT:
    device = resolve_device(device)
    model = _build_model(config, seg_path, device)
    checkpoint.text_encoder_state(text_path, config)  # fail now, not at the first unknown prompt (mmap: cheap)
    return LoadedSAT(config, model, device, seg_path, text_path, _writable_dir(cache_dir))


def precompute_embeddings(loaded: LoadedSAT, pairs: Iterable[tuple[str, str]], batch_size: int = 64,
                          progress: Callable[[int, int], None] | None = None) -> int:
    """Embed every (term, modality) pair not yet cached (e.g. the whole vocabulary); returns how many were new."""
    todo: dict[str, list[str]] = {}
    for term, modality in pairs:
        if loaded.embeddings.get(term, modality) is None:
            todo.setdefault(modality, []).append(term)
    total = sum(len(v) for v in todo.values())
    done = 0
    for modality, terms in todo.items():
        for start in range(0, len(terms), batch_size):
            batch = terms[start:start + batch_size]
            with torch.no_grad():
                for term, emb in zip(batch, loaded.text_encoder(batch, modality)):
                    loaded.embeddings.put(term, modality, emb)
            done += len(batch)
            if progress:
                progress(done, total)
    if total:
        loaded.embeddings.save()
    return total
