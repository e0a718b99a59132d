"""`GET /sat/images/{image_id}`: whether the server's datastore holds an image, asked without fetching it.

A client whose volume was loaded from DICOM asks this before a run: when the datastore is a DICOMweb server
(a PACS) holding the volume's series with as many instances as the client loaded, the client names the series
(`image=<SeriesInstanceUID>`) instead of uploading the volume. For a DICOMweb datastore one QIDO-RS series
search answers (no instance is retrieved); for a folder, its list of images.
"""

from __future__ import annotations

import logging

from fastapi import HTTPException
from monailabel.datastore.dicom import DICOMWebDatastore

logger = logging.getLogger(__name__)

SERIES_UID, SERIES_INSTANCES = "0020000E", "00201209"  # SeriesInstanceUID, NumberOfSeriesRelatedInstances


def image_info(store, image_id: str) -> dict:
    """{"image_id", "datastore": "dicomweb" | "local", "exists", and for a DICOMweb series "instances"}."""
    if isinstance(store, DICOMWebDatastore):
        return {"image_id": image_id, "datastore": "dicomweb", **_series_info(store, image_id)}
    return {"image_id": image_id, "datastore": "local", "exists": image_id in store.list_images()}


def _series_info(store: DICOMWebDatastore, series_uid: str) -> dict:
    """Whether the PACS has the series, and how many instances it holds (a 502 when the PACS fails)."""
    try:  # MONAI Label's datastore keeps its DICOMweb client private; its own search is this one
        found = store._client.search_for_series(search_filters={"SeriesInstanceUID": series_uid},
                                                fields=["NumberOfSeriesRelatedInstances"])
    except Exception as exc:  # noqa: BLE001 - whatever the PACS client raises
        raise datastore_failed(series_uid, exc) from None
    matches = [series for series in found if series.get(SERIES_UID, {}).get("Value") == [series_uid]]
    if not matches:
        return {"exists": False}
    count = matches[0].get(SERIES_INSTANCES, {}).get("Value") or [None]
    return {"exists": True, "instances": int(count[0]) if count[0] is not None else None}


def datastore_failed(image_id: str, exc: BaseException) -> HTTPException:
    """The 502 answer for a DICOMweb datastore that failed (unreachable, refused), with its error."""
    logger.warning("datastore failed on %r: %s", image_id[:80], exc)
    return HTTPException(status_code=502, detail={
        "code": "datastore_error", "exit_code": 1, "message": f"The server's datastore failed to deliver {image_id[:80]!r}: {exc}",
        "hint": "The PACS may be down, or unable to send this series uncompressed (MONAI Label asks for that); "
                "ask the administrator."})
