"""Persistent cache of text embeddings, keyed by model fingerprint, modality and prompt.

With the vocabulary pre-embedded once per model, in-vocabulary prompts need no text encoder at run
time (the ~440 MB text encoder is then never loaded).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import torch


def cache_key(term: str, modality: str) -> str:
    """Prompts are lower-cased by SAT's tokenizer, so case does not change the embedding."""
    return f"{modality.strip().lower()}\t{term.lower()}"


class EmbeddingCache:
    """Embeddings of one model (by fingerprint), in memory and, if `folder` is given, on disk."""

    def __init__(self, fingerprint: str, folder: str | Path | None) -> None:
        self.fingerprint = fingerprint
        self.path = Path(folder) / f"{fingerprint[:32]}.pt" if folder is not None else None
        self._entries: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged cache is only a lost speed-up: start afresh
            return
        if isinstance(data, dict) and data.get("fingerprint") == self.fingerprint:
            self._entries = {k: v for k, v in data.get("entries", {}).items() if isinstance(v, torch.Tensor)}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, term: str, modality: str) -> torch.Tensor | None:
        return self._entries.get(cache_key(term, modality))

    def put(self, term: str, modality: str, embedding: torch.Tensor) -> None:
        with self._lock:
            self._entries[cache_key(term, modality)] = embedding.detach().to("cpu", torch.float32).clone()

    def save(self) -> bool:
        """Write the cache atomically; returns False when the folder is not writable (memory-only cache)."""
        if self.path is None:
            return False
        with self._lock:
            payload = {"fingerprint": self.fingerprint, "entries": dict(self._entries)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".emb-", suffix=".tmp")
            os.close(fd)
            torch.save(payload, tmp)
            os.replace(tmp, self.path)
            return True
        except OSError:
            if "tmp" in locals() and os.path.exists(tmp):
                os.unlink(tmp)
            return False
