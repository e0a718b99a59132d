"""The SAT models on this computer: status, licence, import, removal, and downloads in a child process.

`SATSegmentLib.modelstore` does the work; this class adds what the module needs around it: the download
runs as `python -m SATSegmentSlicerLib.modeldownload NAME` through `WorkerClient` (Slicer never waits on
the network) and ends exactly once, as 'done', 'cancelled' (the user stopped it: not an error) or 'error'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .worker import WorkerClient


@dataclass
class DownloadEnd:
    """How a download ended: status 'done', 'cancelled' or 'error' (then `error` holds the error event)."""

    name: str
    status: str
    error: dict | None = None


class ModelSetup:
    """Installed models and their download, for one module instance."""

    def __init__(self, pythonCommand: list[str], env: dict[str, str] | None,
                 onProgress: Callable[[dict], None] | None = None, onFinished: Callable[[DownloadEnd], None] | None = None,
                 onLog: Callable[[str], None] | None = None) -> None:
        self.pythonCommand, self.env = list(pythonCommand), env
        self.onProgress = onProgress or (lambda event: None)
        self.onFinished = onFinished or (lambda end: None)
        self.onLog = onLog or (lambda line: None)
        self._download: WorkerClient | None = None
        self._downloading = ""
        self._final: dict | None = None
        self._cancelled = False

    @staticmethod
    def _store():
        from SATSegmentLib import modelstore  # light, but only needed once the module is used

        return modelstore

    # -- what is installed --------------------------------------------------------------------------

    def statuses(self) -> list:
        """`modelstore.ModelStatus` of every registry model."""
        return self._store().list_models()

    def status(self, name: str):
        """The status of one registry model, or None for a model folder."""
        return next((row for row in self.statuses() if row.name == name), None)

    def info(self, name: str) -> dict:
        return self._store().registry().get(name, {})

    def missing(self, name: str) -> str | None:
        """Display name of registry model `name` when it is not installed, else None."""
        row = self.status(name)
        return row.display_name if row is not None and not row.installed else None

    def licence(self) -> str:
        return self._store().licence_note()

    def folder(self) -> Path:
        """The folder holding the installed models (created, so it can be opened)."""
        folder = self._store().model_home() / "models"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def importModel(self, name: str, path: str) -> None:
        self._store().import_model(name, path)

    def remove(self, name: str) -> None:
        self._store().remove(name)

    # -- download -----------------------------------------------------------------------------------

    @property
    def downloading(self) -> str:
        """Name of the model being downloaded, or ''."""
        return self._downloading

    def startDownload(self, name: str) -> None:
        if self._download is not None:
            raise RuntimeError(f"{self._downloading} is already being downloaded")
        self._downloading, self._final, self._cancelled = name, None, False
        command = [*self.pythonCommand, "-m", "SATSegmentSlicerLib.modeldownload", name]
        self._download = WorkerClient(command, self.env, self._onEvent, self.onLog, onExit=self._onExit)
        try:
            self._download.start()
        except OSError as exc:
            self._download = None
            self._end(DownloadEnd(name, "error", {"code": "download_error", "message": str(exc), "hint": ""}))

    def cancelDownload(self) -> None:
        """Stop the download process; the partial file stays, and the next download resumes it."""
        if self._download is not None:
            self._cancelled = True
            self._download.kill()  # its exit, seen by poll(), ends the download as cancelled

    def poll(self) -> None:
        if self._download is not None:
            self._download.poll()

    def _onEvent(self, event: dict) -> None:
        if event.get("event") == "progress":
            self.onProgress(event)
        elif event.get("event") in ("result", "error"):
            self._final = event

    def _onExit(self, returnCode: int) -> None:
        self._download = None
        name, final = self._downloading, self._final
        if final is not None and final["event"] == "result":
            self._end(DownloadEnd(name, "done"))
        elif self._cancelled:
            self._end(DownloadEnd(name, "cancelled"))
        elif final is not None:
            self._end(DownloadEnd(name, "error", final))
        else:
            self._end(DownloadEnd(name, "error", {"code": "download_stopped", "exit_code": returnCode,
                                                  "message": f"The download stopped (exit code {returnCode}).", "hint": ""}))

    def _end(self, end: DownloadEnd) -> None:
        self._downloading = ""
        self.onFinished(end)
