"""The MONAI Label infer task `sat`: text prompts in, a label image (or .seg.nrrd) and label names out."""

from __future__ import annotations

from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from .. import __version__
from .engine import InferEngine
from .httperrors import answered_as_http
from .params import CLIENT_PARAMS, OUTPUT_FORMATS

JOB_KEY = "satsegment_job_id"  # set by the app (never by the client) to the id of the job the request runs as
SERIES_KEY = "satsegment_pacs_series"  # set by the app (never by the client): the PACS series UID the image was fetched as
DESCRIPTION = ("SAT: segment any of ~450 anatomical structures named in text (CT, MRI, PET). "
               "Params: prompts (list of names), modality (ct, mri, pet or auto), sat_model, roi "
               "([x0, y0, z0, x1, y1, z1] RAS mm), output_format (labelmap or seg.nrrd).")


class SATInferTask(InferTask):
    """Runs every request on the app's one `InferEngine`; our errors become HTTP errors with our messages."""

    def __init__(self, engine: InferEngine) -> None:
        super().__init__(type=InferType.SEGMENTATION, labels=None, dimension=3, description=DESCRIPTION,
                         config={"prompts": [], "modality": "auto", "sat_model": engine.settings.default_model,
                                 "output_format": OUTPUT_FORMATS[0]})
        self.engine = engine

    def info(self) -> dict[str, Any]:
        return {**super().info(), "models": list(self.engine.settings.models), "params": list(CLIENT_PARAMS),
                "satsegment_version": __version__}

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: dict) -> tuple[str, dict]:
        with answered_as_http():
            return self.engine.infer(request, request.get("image", ""), request.get(JOB_KEY), request.get(SERIES_KEY))
