"""`ModelSource`: which SAT weights a job uses (an installed model, a model folder, or official files
downloaded by hand), checked before any heavy work and loaded on request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import InputError, ModelError

Progress = Callable[[str, int, int, str], None]


@dataclass(frozen=True)
class ModelSource:
    """Model files to load: a model folder, or an official (checkpoint, text encoder, variant) triple.

    `pending_download` names a registry model that is not installed yet but may be downloaded.
    """

    label: str
    folder: str | None = None
    checkpoint: str | None = None
    text_encoder_checkpoint: str | None = None
    variant: str | None = None
    pending_download: str | None = None

    @classmethod
    def from_options(cls, model: str | None, checkpoint: str | None, text_encoder_checkpoint: str | None,
                     variant: str | None, allow_download: bool) -> "ModelSource":
        """Check the options and find the files; a missing registry model raises ModelError unless downloads are allowed."""
        from . import modelstore

        if checkpoint or text_encoder_checkpoint:
            return cls._official_files(checkpoint, text_encoder_checkpoint, variant)
        name = model or "nano"
        if name in modelstore.registry():
            label = modelstore.entry(name)["display_name"]
            if name not in modelstore.installed() and allow_download:
                return cls(label, pending_download=name)
            return cls(label, folder=str(modelstore.path_for(name)))
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ModelError(f"'{name}' is neither a model name ({', '.join(modelstore.registry())}) nor a model folder.",
                             "Use --model nano, --model pro, or the path of a folder with sat_config.json, segmentation.pth and text_encoder.pth.")
        return cls(f"model folder {folder.name}", folder=str(folder.resolve()))

    @classmethod
    def _official_files(cls, checkpoint: str | None, text_encoder_checkpoint: str | None,
                        variant: str | None) -> "ModelSource":
        if not (checkpoint and text_encoder_checkpoint and variant):
            raise InputError("Official checkpoint files need all three of --checkpoint, --text-encoder-checkpoint and --variant.",
                             "Example: --checkpoint nano.pth --text-encoder-checkpoint nano_text_encoder.pth --variant nano")
        paths = [str(Path(p).expanduser()) for p in (checkpoint, text_encoder_checkpoint)]
        for path in paths:
            if not Path(path).is_file():
                raise ModelError(f"Checkpoint file not found: {path}", "Check the path of the official .pth file.")
        return cls(f"SAT-{variant.capitalize()} ({Path(paths[0]).name})", checkpoint=paths[0],
                   text_encoder_checkpoint=paths[1], variant=variant)

    def download(self, progress: Progress | None = None, cancel: threading.Event | None = None) -> "ModelSource":
        """The installed source, downloading the registry model first if that is still pending."""
        if self.pending_download is None:
            return self
        from . import modelstore

        modelstore.download(self.pending_download, progress=progress, cancel=cancel)
        return ModelSource(self.label, folder=str(modelstore.path_for(self.pending_download)))

    def config(self) -> Any:
        """The model's `SATConfig`, read without loading any weights (for memory estimates)."""
        from .model import SATConfig

        if self.folder is not None:
            return SATConfig.load(self.folder)
        if self.variant is not None:
            return SATConfig.for_variant(self.variant)
        from . import modelstore

        return SATConfig.for_variant(modelstore.entry(self.pending_download)["variant"])

    def load(self, device: str) -> Any:
        """The `LoadedSAT` on `device`."""
        from . import model as sat_model

        if self.pending_download is not None:
            raise ModelError(f"{self.label} is not downloaded yet.", "Download it first (satsegment models download).")
        if self.checkpoint is not None:
            return sat_model.load_official_checkpoints(self.checkpoint, self.text_encoder_checkpoint, self.variant, device)
        return sat_model.load_model_folder(self.folder, device)
