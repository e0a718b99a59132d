"""One SAT run from the scene's point of view: export the volume, let the worker segment it, import.

The scene is changed only when the worker's result has arrived: a cancelled or failed run leaves it
exactly as it was. Events reach the owner through callbacks from `poll()`; no Qt here. `RunnerBase` is
what every runner shares (checks, export, import, clean-up): `SegmentationRunner` runs on this computer's
worker, `remoterunner.RemoteRunner` on a server.
"""

from __future__ import annotations

import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import slicer

from . import dicomlinks, segments, volumes
from .policies import ConflictPolicy
from .worker import WorkerClient


@dataclass
class RunRequest:
    """Everything a run needs; nodes are MRML nodes of one scene."""

    volumeNode: slicer.vtkMRMLScalarVolumeNode
    prompts: list[str]
    modality: str                                        # 'ct', 'mri', 'pet'
    model: str = "nano"                                  # registry name or model folder
    device: str = "auto"                                 # 'auto', 'cuda', 'cpu'
    roiNode: slicer.vtkMRMLMarkupsROINode | None = None
    outputSegmentationNode: slicer.vtkMRMLSegmentationNode | None = None  # None: create one
    policy: ConflictPolicy = ConflictPolicy.AUTO
    allowFreeText: bool = False                          # the user confirmed out-of-vocabulary prompts
    names: str = "sat"                                   # segment names: 'sat' terms or 'tg263' names


@dataclass
class RunOutcome:
    """How a run ended: status 'done', 'cancelled' or 'error'.

    `error` is the worker's error event, or one of the runner's own (`code` 'input_removed',
    'result_unreadable', 'internal_error'), with an English `message` and `hint`.
    """

    status: str
    segmentationNode: slicer.vtkMRMLSegmentationNode | None = None
    report: segments.ImportReport | None = None
    segments: list[dict] = field(default_factory=list)   # the worker's per-segment summary
    timings: dict = field(default_factory=dict)
    error: dict | None = None
    warnings: list[dict] = field(default_factory=list)
    createdNode: bool = False      # the run created `segmentationNode`
    outputReplaced: bool = False   # the chosen segmentation was deleted during the run: a new one holds the results

    @property
    def canUndo(self) -> bool:
        return self.status == "done" and self.segmentationNode is not None and self.segmentationNode.GetScene() is not None

    def undo(self) -> None:
        """Restore the segments this run replaced and remove the ones it added (and the node it created,
        when nothing else was put in it since)."""
        if not self.canUndo:
            raise RuntimeError("this result can no longer be undone")
        node = self.segmentationNode
        segments.undoImport(node, self.report)
        if self.createdNode and node.GetSegmentation().GetNumberOfSegments() == 0:
            node.GetScene().RemoveNode(node)
        self.segmentationNode = None


def _error(code: str, message: str, hint: str = "", detail: str = "") -> dict:
    """One of the runner's own errors; the widget words it from `code` and `detail` (translatable)."""
    return {"event": "error", "code": code, "message": message, "hint": hint, "detail": detail}


class RunRefused(ValueError):
    """A request the runner refuses before any work; `code` and `params` let the caller word it."""

    def __init__(self, code: str, message: str, **params: str) -> None:
        super().__init__(message)
        self.code, self.params = code, params


RESULT_FILE = "result.seg.nrrd"
ProgressCallback = Callable[[dict], None]
FinishedCallback = Callable[[RunOutcome], None]


class RunnerBase:
    """One job at a time: checks and exports the request, and imports a result into the scene."""

    def __init__(self, onProgress: ProgressCallback | None = None, onFinished: FinishedCallback | None = None,
                 tempRoot: str | None = None) -> None:
        self.onProgress = onProgress or (lambda event: None)
        self.onFinished = onFinished or (lambda outcome: None)
        self.tempRoot = tempRoot
        self._request: RunRequest | None = None
        self._jobId: str | None = None
        self._workDir: Path | None = None
        self._warnings: list[dict] = []

    @property
    def busy(self) -> bool:
        return self._jobId is not None

    def _prepare(self, request: RunRequest) -> Path:
        """Refuse what cannot run, then write the volume to a new temporary folder; returns the file."""
        if self.busy:
            raise RuntimeError("a SAT run is already in progress")
        if not request.prompts:
            raise ValueError("no prompts to segment")
        output = request.outputSegmentationNode
        if output is not None and output.GetTransformNodeID() != request.volumeNode.GetTransformNodeID():
            raise RunRefused("output_transform",
                             f"The segmentation '{output.GetName()}' is under another transform than the volume "
                             f"'{request.volumeNode.GetName()}', so the results would not overlay the scan.",
                             segmentation=output.GetName(), volume=request.volumeNode.GetName())
        self._workDir = Path(tempfile.mkdtemp(prefix="SATSegment-", dir=self.tempRoot))
        inputPath = self._workDir / "input.nrrd"
        try:
            volumes.exportVolume(request.volumeNode, str(inputPath))
        except Exception:
            self._cleanUp()
            raise
        self._request, self._warnings = request, []
        return inputPath

    @staticmethod
    def _options(request: RunRequest) -> dict:
        """What the engine needs besides image and prompts: model, device, free text, the ROI in the file's space."""
        options = {"model": request.model, "device": request.device, "allow_free_text": request.allowFreeText}
        if request.roiNode is not None:
            options["roi"] = volumes.roiBoundsInVolumeSpace(request.roiNode, request.volumeNode)
        return options

    def _end(self, kind: str, event: dict) -> None:
        """A 'result', 'error' or 'cancelled' event ends the run: whatever goes wrong, it is reported and cleaned up."""
        try:
            outcome = self._outcome(kind, event)
        except Exception as exc:
            outcome = RunOutcome("error", error=_error("internal_error", f"The result could not be added: {exc}",
                                                       traceback.format_exc(), str(exc)), warnings=self._warnings)
        self._finish(outcome)

    def _outcome(self, kind: str, event: dict) -> RunOutcome:
        if kind == "result":
            return self._importResult(event)
        if kind == "error":
            return RunOutcome("error", error=event, warnings=self._warnings)
        return RunOutcome("cancelled", warnings=self._warnings)

    def _importResult(self, event: dict) -> RunOutcome:
        """Segments into the scene, from the file this runner asked for (not a path echoed back)."""
        request = self._request
        if request.volumeNode.GetScene() is None:
            return RunOutcome("error", error=_error("input_removed", "The input volume was deleted during the run, "
                                                    "so the results were not added."), warnings=self._warnings)
        output = request.outputSegmentationNode
        outputRemoved = output is not None and output.GetScene() is None
        created = output is None or outputRemoved
        node = segments.createOutputSegmentation(request.volumeNode) if created else output
        try:
            report = segments.importResults(node, str(self._workDir / RESULT_FILE), request.policy, request.names)
        except (OSError, KeyError) as exc:
            if created:
                node.GetScene().RemoveNode(node)
            return RunOutcome("error", error=_error("result_unreadable", f"The result could not be loaded: {exc}",
                                                    "", str(exc)), warnings=self._warnings)
        if node.GetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole()) in (None, "", request.volumeNode.GetID()):
            dicomlinks.linkToSource(node, request.volumeNode)  # not one the user made on another volume
        self._warnNamesMissing(event.get("segments", []))
        return RunOutcome("done", node, report, event.get("segments", []), event.get("timings", {}),
                          warnings=self._warnings, createdNode=created, outputReplaced=outputRemoved)

    def _warnNamesMissing(self, summaries: list[dict]) -> None:
        """Under TG-263 naming, one warning for the structures TG-263 has no name for (they keep SAT's term)."""
        from SATSegmentLib.vocabulary.tg263 import missing_names_warning

        message = missing_names_warning(s["term"] for s in summaries if "term" in s) if self._request.names == "tg263" else None
        if message:
            self._warnings.append({"event": "warning", "message": message})

    def _cleanUp(self) -> None:
        if self._workDir is not None:
            shutil.rmtree(self._workDir, ignore_errors=True)
        self._jobId, self._request, self._workDir = None, None, None

    def _finish(self, outcome: RunOutcome) -> None:
        """Back to idle (temporary files removed) before anyone hears of the outcome."""
        self._cleanUp()
        self.onFinished(outcome)


class SegmentationRunner(RunnerBase):
    """Runs one job at a time on a persistent worker (this computer) and imports its result into the scene."""

    def __init__(
        self,
        client: WorkerClient,
        onProgress: ProgressCallback | None = None,
        onFinished: FinishedCallback | None = None,
        tempRoot: str | None = None,
    ) -> None:
        super().__init__(onProgress, onFinished, tempRoot)
        self.client = client
        self.client.onEvent = self._onEvent

    def start(self, request: RunRequest) -> str:
        """Export the volume and queue the job; returns the job id. The scene is not changed."""
        inputPath = self._prepare(request)
        self._jobId = self.client.submitSegment(
            str(inputPath), request.prompts, str(self._workDir / RESULT_FILE), request.modality, self._options(request))
        return self._jobId

    def cancel(self) -> None:
        if self._jobId:
            self.client.cancel(self._jobId)

    def poll(self) -> None:
        self.client.poll()

    def waitUntilFinished(self, timeout: float) -> None:
        """Block (polling) until the current run ends: for scripts and tests, never for the GUI."""
        if self._jobId:
            self.client.waitFor(self._jobId, timeout)

    def shutdown(self) -> None:
        self.client.shutdown()

    def _onEvent(self, event: dict) -> None:
        if event.get("id") != self._jobId:
            return
        kind = event.get("event")
        if kind == "progress":
            self.onProgress(event)
        elif kind == "warning":
            self._warnings.append(event)
        elif kind in ("result", "error", "cancelled"):
            self._end(kind, event)
