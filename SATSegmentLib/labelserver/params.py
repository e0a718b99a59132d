"""The `sat` infer task's parameters as a client sends them → the `SegmentRequest` the worker runs.

Clients choose only what a reading room may choose: prompts, modality, one of the models the
administrator serves (`sat_model`), an ROI, free text, the output format. Paths, device and memory stay the
server's. Shapes and types are checked by the worker protocol's own parser (`server.parse_segment_request`),
so the server and the local worker refuse the same things with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..job import SegmentRequest
from ..server import BadRequestError, parse_segment_request

OUTPUT_FORMATS = ("labelmap", "seg.nrrd")
# `sat_model`, not `model`: MONAI Label's request already uses `model` for the infer task's name ('sat').
CLIENT_PARAMS = ("prompts", "modality", "sat_model", "roi", "allow_free_text", "output_format")
_PROMPTS_HINT = 'Send params like {"prompts": ["liver", "left kidney"], "modality": "ct"}.'


@dataclass(frozen=True)
class ServerSettings:
    """What the administrator fixed when starting the server (MONAI Label `--conf` values)."""

    models: dict[str, str] = field(default_factory=lambda: {"nano": "nano"})  # name clients send → model name or folder
    device: str = "auto"
    max_memory: str | None = None
    feature_cache_mb: float | None = None

    @property
    def default_model(self) -> str:
        return next(iter(self.models))

    @classmethod
    def from_conf(cls, conf: dict[str, str]) -> "ServerSettings":
        """Settings from MONAI Label's `--conf KEY VALUE` pairs: `models` ('nano', 'nano,pro' or
        'name=/folder,...'), `device`, `max_memory` ('40GB'), `feature_cache_mb`."""
        models = {}
        for item in filter(None, (part.strip() for part in conf.get("models", "nano").split(","))):
            name, _, source = item.partition("=")
            models[name.strip()] = source.strip() or name.strip()
        if not models:
            raise ValueError("--conf models must name at least one model, e.g. --conf models nano")
        cache = conf.get("feature_cache_mb")
        return cls(models, conf.get("device", "auto"), conf.get("max_memory") or None,
                   None if cache in (None, "") else float(cache))


@dataclass(frozen=True)
class InferParams:
    """One checked `sat` request: the job to run and how its result goes back."""

    request: SegmentRequest
    output_format: str
    model_name: str


def parse_params(params: dict, image: str, workdir: Path, settings: ServerSettings) -> InferParams:
    """The job for `params` on the image at `image`, writing into `workdir`; BadRequestError on bad params."""
    if not isinstance(params.get("prompts"), list):
        raise BadRequestError("'prompts' must be a list of anatomy names.", _PROMPTS_HINT)
    model_name = params.get("sat_model") or settings.default_model
    if not isinstance(model_name, str) or model_name not in settings.models:
        raise BadRequestError(f"Model {str(model_name)[:60]!r} is not served here.",
                              f"This server serves: {', '.join(settings.models)}.")
    output_format = params.get("output_format") or OUTPUT_FORMATS[0]
    if output_format not in OUTPUT_FORMATS:
        raise BadRequestError(f"'output_format' must be one of {', '.join(OUTPUT_FORMATS)}.")
    options = {"model": settings.models[model_name], "device": settings.device, "max_memory": settings.max_memory,
               "split_dir": str(workdir / "split"), "overwrite": True}
    for name in ("roi", "allow_free_text"):
        if params.get(name) is not None:
            options[name] = params[name]
    message = {"input": image or "", "output": str(workdir / "segmentation.seg.nrrd"), "prompts": params["prompts"],
               "modality": params.get("modality") or "auto", "options": options}
    if not message["input"]:
        raise BadRequestError("No image was given.", "Name an image of the server's datastore, or upload one.")
    return InferParams(parse_segment_request(message), output_format, model_name)
