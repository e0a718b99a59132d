"""HTTP routes the SATSegment app adds to MONAI Label: `POST /infer/sat` run off the event loop, a job's
status and cancel (`GET` and `DELETE /sat/jobs/{job_id}`), and whether the datastore holds an image
(`GET /sat/images/{image_id}`, see images.py).

MONAI Label 0.8.5's `POST /infer/{model}` is an `async` handler that runs the whole job inline, so while one
job runs its event loop serves nothing else: no `/info/`, no other client's upload, no cancel, and no notice
that a client hung up. Our `/infer/sat` route sits ahead of it and does the same work (MONAI Label's own
`run_inference`) on a thread, while the loop keeps answering and watches the connection: a client that
disconnects has its job cancelled, queued or running.
"""

from __future__ import annotations

import asyncio
import logging
import re

import anyio
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, File, Form, Request, UploadFile
from monailabel.config import settings
from monailabel.endpoints.infer import ResultType, run_inference
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance

from ..server import BadRequestError
from .httperrors import answered_as_http
from .images import image_info
from .jobs import Job, JobQueue

logger = logging.getLogger(__name__)

TASK = "sat"
ROUTE_PREFIX = "satsegment_"  # names of our routes, to find them again when MONAI Label reloads the app
CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def install(app: FastAPI, jobs: JobQueue) -> None:
    """Put our routes ahead of MONAI Label's (its `/infer/{model}` would match `/infer/sat` first), replacing
    any an earlier instance of the app installed."""
    kept = [route for route in app.router.routes if not getattr(route, "name", "").startswith(ROUTE_PREFIX)]
    app.router.routes[:] = kept
    app.include_router(_router(jobs, anyio.CapacityLimiter(jobs.max_queued)), prefix=settings.MONAI_LABEL_API_STR)
    ours = app.router.routes[len(kept):]
    app.router.routes[:] = ours + kept


def _router(jobs: JobQueue, threads: anyio.CapacityLimiter) -> APIRouter:
    router = APIRouter(tags=["SATSegment"])
    user_role = RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)

    @router.post(f"/infer/{TASK}", name=f"{ROUTE_PREFIX}infer", summary="Run SAT (prompts in params) off the event loop")
    async def infer_sat(request: Request, background_tasks: BackgroundTasks, image: str = "", session_id: str = "",
                        params: str = Form("{}"), file: UploadFile = File(None), label: UploadFile = File(None),
                        output: ResultType | None = None, job_id: str = "", client_id: str = "",
                        user: User = Depends(user_role)):
        owner = _owner(user)
        with answered_as_http():
            if file is None:
                _refuse_a_path(image)
            job = jobs.submit(job_id or None, _client(owner, client_id, request), owner)
        watcher = asyncio.ensure_future(_cancel_on_disconnect(request, jobs, job))
        try:
            return await anyio.to_thread.run_sync(_run_bound, jobs, job, background_tasks, image, session_id, params,
                                                  file, label, output, limiter=threads)
        except BaseException:
            await background_tasks()  # FastAPI runs them only after an answer that succeeded: the uploaded scan goes now
            raise
        finally:
            watcher.cancel()
            jobs.abandon(job)  # no effect on a job the engine finished

    @router.get(f"/{TASK}/jobs/{{job_id}}", name=f"{ROUTE_PREFIX}status", summary="A SAT job's state and queue position")
    async def job_status(job_id: str, user: User = Depends(user_role)) -> dict:
        with answered_as_http():
            return jobs.status(job_id, _owner(user))

    @router.delete(f"/{TASK}/jobs/{{job_id}}", name=f"{ROUTE_PREFIX}cancel", summary="Cancel a SAT job, queued or running")
    async def cancel_job(job_id: str, user: User = Depends(user_role)) -> dict:
        with answered_as_http():
            job = jobs.cancel(job_id, _owner(user))
        logger.info("job %s cancelled by its client (%s)", job.id, job.state)
        return {"job_id": job.id, "state": "cancelled" if job.cancel.is_set() else job.state}

    @router.get(f"/{TASK}/images/{{image_id}}", name=f"{ROUTE_PREFIX}image",
                summary="Whether the datastore holds an image (a DICOMweb series: its instance count), without fetching it")
    async def image(image_id: str, user: User = Depends(user_role)) -> dict:
        return await anyio.to_thread.run_sync(lambda: image_info(app_instance().datastore(), image_id))

    return router


def _run_bound(jobs: JobQueue, job: Job, background_tasks: BackgroundTasks, *fields):
    """MONAI Label's own infer handling of the request's `fields`, on this thread, with `job` as the thread's
    current job (the app passes its id on to the engine)."""
    with jobs.bound(job):
        return run_inference(background_tasks, TASK, *fields)


async def _cancel_on_disconnect(request: Request, jobs: JobQueue, job: Job) -> None:
    """Cancel `job` when its client disconnects: the request's body is read, so the next message is the hang-up."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    if job.state in ("queued", "running"):
        logger.info("job %s cancelled: its client disconnected", job.id)
        jobs.cancel(job.id, job.user, reason="its client disconnected")


def _refuse_a_path(image: str) -> None:
    """Refuse an `image` that is a path: MONAI Label would read any file the server can, so clients name images of
    the datastore only (ids never hold a path separator) or upload theirs."""
    if image in (".", "..") or any(separator in image for separator in ("/", "\\")):
        raise BadRequestError(f"'image' must be an image id of the server's datastore, not a path: {image[:80]!r}.",
                              "List the images with GET /datastore/?output=all, or upload the scan with the request.")


def _owner(user: User) -> str | None:
    """The authenticated user a job belongs to; None when authentication is off (the job id alone is the key)."""
    return user.username if settings.MONAI_LABEL_AUTH_ENABLE else None


def _client(owner: str | None, client_id: str, request: Request) -> str:
    """Whose turn a job takes: the authenticated user, else the `client_id` the client sent, else its address."""
    if owner is not None:
        return f"user:{owner}"
    if client_id:
        if not CLIENT_ID.fullmatch(client_id):
            raise BadRequestError("'client_id' must be 1 to 64 letters, digits or ._:- characters.",
                                  "Let the client make it: uuid.uuid4().hex.")
        return f"client:{client_id}"
    return f"address:{request.client.host if request.client else 'unknown'}"

