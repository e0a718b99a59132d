"""The Setup section: Python packages, the model (download, import, removal) and the device line."""

from __future__ import annotations

from typing import Optional

import qt
import slicer
from slicer.i18n import tr as _

from SATSegmentSlicerLib import devices

from .part import PanelPart


class SetupPanel(PanelPart):
    """Packages and models: what is missing, installing it, and what the chosen model needs of the GPU."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.devices = None  # the device probe's answer
        self.modelInstalled = False
        self.ready = False  # packages and the chosen model are installed: SAT can run on this computer

    def connect(self) -> None:
        ui = self.ui
        for combo, items in (
                (ui.modelComboBox, (("nano", _("SAT-Nano")), ("pro", _("SAT-Pro")))),
                (ui.deviceComboBox, (("auto", _("Automatic")), ("cuda", _("GPU")), ("cpu", _("CPU"))))):
            for value, label in items:
                combo.addItem(label, value)
        ui.modelComboBox.currentIndexChanged.connect(self.onModelChoiceChanged)
        ui.installDependenciesButton.clicked.connect(self.onInstallDependencies)
        ui.downloadModelButton.clicked.connect(self.onDownloadModel)
        ui.cancelDownloadButton.clicked.connect(self.onCancelDownload)
        ui.importModelFolderButton.clicked.connect(self.onImportModelFolder)
        ui.importModelZipButton.clicked.connect(self.onImportModelZip)
        ui.openModelsFolderButton.clicked.connect(self.onOpenModelsFolder)
        ui.removeModelButton.clicked.connect(self.onRemoveModel)

    def updateState(self, running: bool) -> None:
        """The setup buttons for what the logic is doing now (part of `setProcessingState`)."""
        ui, logic = self.ui, self.logic
        downloading = bool(logic.models.downloading)
        ui.installDependenciesButton.enabled = not running and bool(logic.dependencies.missing())
        ui.downloadModelButton.enabled = not downloading and not self.modelInstalled
        ui.cancelDownloadButton.enabled = downloading
        ui.downloadProgressBar.visible = downloading
        for button in (ui.importModelFolderButton, ui.importModelZipButton):
            button.enabled = not downloading
        ui.removeModelButton.enabled = not downloading and not running and self.modelInstalled

    # -- devices -----------------------------------------------------------------------------------

    def onDevicesKnown(self, info: dict) -> None:
        self.devices = info
        self.updateDeviceInfo()

    def updateDeviceInfo(self) -> None:
        info = self.devices
        gpus = info["gpus"] if info else []
        if info is None:
            text = _("Checking the GPU...")
        elif info["error"]:
            text = _("The GPU could not be checked ({error}); Automatic lets SAT choose when it runs.").format(error=info["error"])
        elif gpus:
            text = ", ".join(_("{name} ({memory} GB)").format(name=g["name"], memory=g["memory_gb"]) for g in gpus)
        else:
            text = _("No CUDA GPU found: SAT will run on the CPU (minutes per scan).")
        model = self.logic.models.info(self.ui.modelComboBox.currentData)
        needs = self.memoryText(devices.memoryAdvice(gpus, model.get("variant")), model.get("display_name", ""))
        self.ui.deviceInfoLabel.text = text + ("\n" + needs if needs else "")

    @staticmethod
    def memoryText(advice: Optional[dict], model: str) -> str:
        """What the chosen model needs, and a warning when the first GPU is too small for it."""
        if advice is None:
            return ""
        text = _("{model} needs about {gpu:.1f} GB of GPU memory ({fastest:.1f} GB for the fastest plan) or "
                 "{cpu:.1f} GB of RAM on the CPU.").format(model=model, gpu=advice["gpu_gb"],
                                                           fastest=advice["gpu_fastest_gb"], cpu=advice["cpu_gb"])
        small = advice["smallGpu"]
        if small:
            text += " " + _("{gpu} has {memory:g} GB: with Automatic, SAT runs on the CPU (slower); an ROI does not "
                            "reduce the memory of one window.").format(gpu=small["name"], memory=small["memory_gb"])
        return text

    # -- packages and models -------------------------------------------------------------------------

    def onModelChoiceChanged(self, *unused) -> None:
        self.widget.updateParameterNodeFromGUI()
        self.updateSetupStatus()

    def updateSetupStatus(self) -> None:
        """Packages and the chosen model; Setup folds away once both are there or SAT runs on a server (and
        opens while they are not)."""
        missing = self.logic.dependencies.missing()
        self.ui.dependencyStatusLabel.text = (_("All required Python packages are installed.") if not missing
                                              else _("Missing Python packages: {packages}").format(packages=", ".join(missing)))
        status = self.logic.models.status(self.ui.modelComboBox.currentData)
        self.modelInstalled = bool(status and status.installed)
        if status is not None:
            self.ui.modelStatusLabel.text = (
                _("{model} is installed ({size:.1f} GB).") if status.installed
                else _("{model} is not installed: download it (about {size:.1f} GB) or import the official files.")
            ).format(model=status.display_name, size=status.size_bytes / 1e9)
        self.ready = not missing and self.modelInstalled
        self.ui.setupCollapsibleButton.collapsed = self.ready or self.widget.compute.onServer
        self.updateDeviceInfo()
        self.widget.setProcessingState()

    def onInstallDependencies(self) -> None:
        missing = self.logic.dependencies.missing()
        if not slicer.util.confirmOkCancelDisplay(
                _("SATSegment will install these Python packages into Slicer:\n\n{packages}\n\n"
                  "torch comes from the PyTorch extension. This can take several minutes.").format(packages="\n".join(missing)),
                windowTitle=_("Install Python packages")):
            return
        with slicer.util.tryWithErrorDisplay(_("Installing Python packages failed."), waitCursor=True):
            outcome = self.logic.dependencies.install()
        self.updateSetupStatus()
        if outcome.status == "restart":
            if slicer.util.confirmYesNoDisplay(_("PyTorch is installed, but Slicer must restart before SATSegment can use it. "
                                                 "Restart Slicer now?"), windowTitle=_("Restart Slicer")):
                slicer.util.restart()
        elif outcome.status == "noPyTorchExtension":
            slicer.util.errorDisplay(_("The PyTorch extension is required: install it from the Extensions Manager, "
                                       "restart Slicer, and press Install again."))
        else:
            self.logic.devices.start()  # torch may now see a GPU
            self.widget.setProcessingState()

    def onDownloadModel(self) -> None:
        if not slicer.util.confirmOkCancelDisplay(self.logic.models.licence(), windowTitle=_("SAT model licence")):
            return
        self.ui.downloadProgressBar.setValue(0)
        self.logic.models.startDownload(self.node.model)
        self.widget.setProcessingState()

    def onCancelDownload(self) -> None:
        self.logic.models.cancelDownload()

    def onDownloadProgress(self, event: dict) -> None:
        total = event.get("total") or 0
        self.ui.downloadProgressBar.setFormat(event.get("message", "") + " (%p%)")  # the file and megabytes
        self.ui.downloadProgressBar.setValue(int(100 * event.get("current", 0) / total) if total else 0)

    def onDownloadFinished(self, end) -> None:
        self.updateSetupStatus()
        if end.status == "cancelled":
            self.widget.appendLog(_("Download cancelled; the next download resumes where it stopped."))
        elif end.status == "error":
            error = end.error
            message = (_("The download stopped (exit code {code}).").format(code=error.get("exit_code"))
                       if error.get("code") == "download_stopped" else error.get("message", ""))
            slicer.util.errorDisplay(message, detailedText=error.get("hint", ""))

    def _importModel(self, path: str) -> None:
        if path:
            with slicer.util.tryWithErrorDisplay(_("Importing the model failed."), waitCursor=True):
                self.logic.models.importModel(self.node.model, path)
            self.updateSetupStatus()

    def onImportModelFolder(self) -> None:
        self._importModel(qt.QFileDialog.getExistingDirectory(self.widget.parent, _("Folder with the official SAT files")))

    def onImportModelZip(self) -> None:
        self._importModel(qt.QFileDialog.getOpenFileName(self.widget.parent, _("Zip file with the official SAT files"), "",
                                                         _("Zip files (*.zip)")))

    def onOpenModelsFolder(self) -> None:
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self.logic.models.folder())))

    def onRemoveModel(self) -> None:
        name = self.ui.modelComboBox.currentText
        if slicer.util.confirmYesNoDisplay(_("Delete the downloaded files of {name}?").format(name=name)):
            with slicer.util.tryWithErrorDisplay(_("Removing the model failed.")):
                self.logic.models.remove(self.node.model)
            self.updateSetupStatus()
