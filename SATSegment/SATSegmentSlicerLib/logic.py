"""The module's Qt-free parts put together: vocabulary, dependencies, models, device probe and runs.

`SATSegmentLogic` (in SATSegment.py) adds the parameter node; the widget polls `poll()` from a QTimer while
`busy`, and scripts and tests can call it in a loop. Every child process goes through `WorkerClient`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import paths
from .dependencies import DependencyInstaller
from .devices import DeviceProbe
from .modelsetup import ModelSetup
from .prompts import Vocabulary


@dataclass(frozen=True)
class ServerChoice:
    """Where a run goes when it runs on a server: the address the user typed and their token (kept in memory only)."""

    url: str
    token: str = ""


CONNECTION_TIMEOUT_S = 15.0  # every call to a server but the run's request: check, image info, status, cancel
RUN_TIMEOUT_S = 3600.0  # the run's request: its job waits its turn in the server's queue before its answer starts


class ModuleLogic:
    """One instance per module widget (or script); `start()` runs SAT on a volume node."""

    def __init__(self, requirementsFile: Path, installTorch: Callable[[], object],
                 pipInstall: Callable[[list[str]], None], temporaryPath: Callable[[], str]) -> None:
        python, environment = [paths.pythonExecutable()], paths.workerEnvironment()
        self.vocabulary = Vocabulary()
        self.dependencies = DependencyInstaller(requirementsFile, installTorch, pipInstall)
        self.models = ModelSetup(python, environment)
        self.devices = DeviceProbe(python + ["-m", "SATSegmentSlicerLib.devices"], environment)
        self.temporaryPath = temporaryPath
        self.onLog: Callable[[str], None] = lambda line: None
        self.onRunProgress: Callable[[dict], None] = lambda event: None
        self.onRunFinished: Callable[[object], None] = lambda outcome: None
        self._localRunner = None  # persistent: its worker keeps the model loaded between runs
        self._runner = None  # the runner of the current or last run (local or server)

    def setCallbacks(self, onLog, onRunProgress, onRunFinished, onDownloadProgress, onDownloadFinished, onDevicesKnown) -> None:
        """Where every part reports: log lines, run progress and outcome, download progress and end, devices."""
        self.onLog, self.onRunProgress, self.onRunFinished = onLog, onRunProgress, onRunFinished
        self.models.onProgress, self.models.onFinished, self.models.onLog = onDownloadProgress, onDownloadFinished, onLog
        self.devices.onKnown, self.devices.onLog = onDevicesKnown, onLog

    @staticmethod
    def dicomModality(volumeNode, database) -> str | None:
        from . import volumes

        return volumes.modalityFromDicom(volumeNode, database)

    @staticmethod
    def fitRoiToVolume(roiNode, volumeNode) -> None:
        from . import volumes

        volumes.fitRoiToVolume(roiNode, volumeNode)

    @staticmethod
    def segmentVolumes(segmentationNode) -> dict[str, float]:
        """Segment name -> volume in ml, for every segment of the segmentation."""
        from .segments import segmentVolumeMl

        segmentation = segmentationNode.GetSegmentation()
        return {segmentation.GetNthSegment(i).GetName(): segmentVolumeMl(segmentation.GetNthSegment(i))
                for i in range(segmentation.GetNumberOfSegments())}

    @property
    def running(self) -> bool:
        return self._runner is not None and self._runner.busy

    @property
    def busy(self) -> bool:
        """A child process is working: a run, a download or the device probe."""
        return self.running or bool(self.models.downloading) or self.devices.busy

    def start(self, volumeNode, prompts: list[str], modality: str, server: ServerChoice | None = None, **options) -> str:
        """Start a run on this computer, or on `server` (options: the fields of `runner.RunRequest`); the
        outcome arrives through `onRunFinished`."""
        from .runner import RunRequest

        if self.running:
            raise RuntimeError("a SAT run is already in progress")
        runner = self._serverRunner(server) if server else self._workerRunner()
        jobId = runner.start(RunRequest(volumeNode, prompts, modality, **options))
        self._runner = runner
        return jobId

    def _workerRunner(self):
        from .runner import SegmentationRunner
        from .worker import WorkerClient

        if self._localRunner is None:
            client = WorkerClient(paths.workerCommand("serve"), paths.workerEnvironment(), onLog=lambda line: self.onLog(line))
            self._localRunner = SegmentationRunner(client, lambda event: self.onRunProgress(event),
                                                   lambda outcome: self.onRunFinished(outcome), tempRoot=self.temporaryPath())
        return self._localRunner

    def _serverRunner(self, server: ServerChoice):
        from SATSegmentLib import __version__

        from .remote import LabelServerClient
        from .remoterunner import RemoteRunner

        client = LabelServerClient(server.url, server.token or None, RUN_TIMEOUT_S, control_timeout=CONNECTION_TIMEOUT_S)
        return RemoteRunner(client, lambda event: self.onRunProgress(event), lambda outcome: self.onRunFinished(outcome),
                            self.temporaryPath(), __version__)

    @staticmethod
    def testConnection(server: ServerChoice) -> dict:
        """The server's `sat` task info (version, models); `remote.RemoteError` says why it cannot be used."""
        from SATSegmentLib import __version__

        from .remote import LabelServerClient

        return LabelServerClient(server.url, server.token or None, control_timeout=CONNECTION_TIMEOUT_S).check(__version__)

    def cancel(self) -> None:
        if self._runner:
            self._runner.cancel()

    def poll(self) -> None:
        if self._runner:
            self._runner.poll()
        self.models.poll()
        self.devices.poll()

    def stopWorker(self) -> None:
        """Stop the worker and any server run (a running job ends as cancelled); the next run starts a new one."""
        for runner in {id(r): r for r in (self._runner, self._localRunner) if r is not None}.values():
            runner.shutdown()
        self._runner = self._localRunner = None

    def shutdown(self) -> None:
        """Stop the worker and any download (module cleanup, application exit)."""
        self.stopWorker()
        self.models.cancelDownload()
