"""The module's Qt-free parts put together: vocabulary, dependencies, models, device probe and runs.

`SATSegmentLogic` (in SATSegment.py) adds the parameter node; the widget polls `poll()` from a QTimer while
`busy`, and scripts and tests can call it in a loop. Every child process goes through `WorkerClient`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import paths
from .dependencies import DependencyInstaller
from .devices import DeviceProbe
from .modelsetup import ModelSetup
from .prompts import Vocabulary


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
        self._runner = None

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

    def start(self, volumeNode, prompts: list[str], modality: str, **options) -> str:
        """Start a run (options: the fields of `runner.RunRequest`); the outcome arrives through `onRunFinished`."""
        from .runner import RunRequest, SegmentationRunner
        from .worker import WorkerClient

        if self._runner is None:  # persistent: its worker keeps the model loaded between runs
            client = WorkerClient(paths.workerCommand("serve"), paths.workerEnvironment(), onLog=lambda line: self.onLog(line))
            self._runner = SegmentationRunner(client, lambda event: self.onRunProgress(event),
                                              lambda outcome: self.onRunFinished(outcome), tempRoot=self.temporaryPath())
        return self._runner.start(RunRequest(volumeNode, prompts, modality, **options))

    def cancel(self) -> None:
        if self._runner:
            self._runner.cancel()

    def poll(self) -> None:
        if self._runner:
            self._runner.poll()
        self.models.poll()
        self.devices.poll()

    def stopWorker(self) -> None:
        """Stop the worker (a running job ends as cancelled); the next run starts a new one."""
        if self._runner:
            self._runner.shutdown()
            self._runner = None

    def shutdown(self) -> None:
        """Stop the worker and any download (module cleanup, application exit)."""
        self.stopWorker()
        self.models.cancelDownload()
