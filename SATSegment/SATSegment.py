"""SATSegment: type anatomy names, get editable segments. SAT runs in a background worker process.

The module is a thin shell: the widget (prompts with completion, progress, cancel, setup, results) on top
of `SATSegmentSlicerLib`, whose Qt-free parts (vocabulary, dependencies, models, device probe, runs) are
put together by `SATSegmentLogic` and tested on Slicer's MRML layer. The engine (`SATSegmentLib`) runs in
separate Python processes; torch, transformers and monai are never imported here.
"""

import logging
import time
from typing import Optional

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SATSegmentSlicerLib import devices, paths, versions
from SATSegmentSlicerLib.dependencies import TORCH_REQUIREMENT
from SATSegmentSlicerLib.logic import ModuleLogic
from SATSegmentSlicerLib.policies import ConflictPolicy
from SATSegmentSlicerLib.prompts import PromptList

paths.ensureLibraryImportable()

POLL_INTERVAL_MS = 100
VOLUMES_DELAY_MS = 300  # volumes are recomputed once edits pause


class SATSegment(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SAT Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["SATSegment developers (SATSegment project)"]
        self.parent.helpText = _(
            "Segment anatomy in CT, MRI and PET by typing its name (for example <i>liver</i>, "
            "<i>left parotid gland</i>, <i>L3</i>). SAT runs on this computer, in a background process, on the GPU "
            "or the CPU; results are segments you can edit in the Segment Editor. Needs Slicer 5.10 or later. "
            'See the <a href="https://github.com/SATSegment/SlicerSATSegment">documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "SAT: Zhao Z. et al., One Model to Rule them All: Towards Universal Segmentation for Medical Images "
            "with Text Prompts, arXiv:2312.17183. No image data leaves this computer; model weights are downloaded "
            "only from the official SAT repository and only when you ask for it."
        )
        slicer.app.connect("startupCompleted()", loadTerminology)


def loadTerminology() -> None:
    """Make Slicer know SATSegment's terminology context, so segments show their SNOMED terms."""
    from SATSegmentSlicerLib.segments import loadTerminologyContexts

    loadTerminologyContexts(slicer.modules.terminologies.logic(), paths.resourcesDir() / "Terminology")


def installTorch():
    """torch through the PyTorch extension, never pip: the module, or None when Slicer must restart first.
    Raises ImportError when the PyTorch extension is not installed."""
    import PyTorchUtils

    return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)


@parameterNodeWrapper
class SATSegmentParameterNode:
    """What the user chose; saved with the scene."""

    inputVolume: vtkMRMLScalarVolumeNode
    roi: Optional[vtkMRMLMarkupsROINode]
    outputSegmentation: Optional[vtkMRMLSegmentationNode]
    prompts: list[str]
    freeTextPrompts: list[str]  # out-of-vocabulary prompts the user explicitly confirmed
    modality: str = "ct"
    model: str = "nano"
    device: str = "auto"
    conflictPolicy: str = ConflictPolicy.AUTO.value


class SATSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Setup, inputs, prompt box with completion, run/cancel with progress, results; logic passed in or made."""

    def __init__(self, parent=None, logic: Optional["SATSegmentLogic"] = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = logic
        self.ui = None  # stays None on a Slicer too old for SATSegment
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._suggestionTerms = {}
        self._lastOutcome = None  # the last run's result, for "Undo last result" (until the next run)
        self._devices = None  # the device probe's answer
        self._modelInstalled = False
        self._observedSegmentation = None

    # -- setup -------------------------------------------------------------------------------------

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        if not versions.pythonSupported():
            self.layout.addWidget(qt.QLabel(_(
                "SATSegment needs Slicer {slicer} or later (Python {python} or later). This Slicer runs Python "
                "{running}: install a newer Slicer to use SATSegment.").format(
                    slicer=versions.MINIMUM_SLICER, python="3.10", running=versions.pythonText())))
            return
        uiWidget = slicer.util.loadUI(str(paths.resourcesDir() / "UI" / "SATSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.logic or SATSegmentLogic()
        self.logic.setCallbacks(onLog=self.appendLog, onRunProgress=self.onRunProgress, onRunFinished=self.onRunFinished,
                                onDownloadProgress=self.onDownloadProgress, onDownloadFinished=self.onDownloadFinished,
                                onDevicesKnown=self.onDevicesKnown)
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self.onPoll)
        self._volumesTimer = qt.QTimer()
        self._volumesTimer.setSingleShot(True)
        self._volumesTimer.setInterval(VOLUMES_DELAY_MS)
        self._volumesTimer.timeout.connect(self.updateVolumes)
        self._fillChoices()
        self._setupPromptEditing()
        for combo in (self.ui.modalityComboBox, self.ui.deviceComboBox, self.ui.conflictPolicyComboBox):
            combo.currentIndexChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.modelComboBox.currentIndexChanged.connect(self.onModelChoiceChanged)
        self.ui.inputVolumeSelector.currentNodeChanged.connect(self.onInputVolumeChanged)
        self.ui.roiSelector.nodeAddedByUser.connect(self.onRoiCreated)
        self.ui.outputSegmentationSelector.currentNodeChanged.connect(self.onOutputChanged)
        self.ui.applyButton.clicked.connect(self.onApplyOrCancel)
        self.ui.installDependenciesButton.clicked.connect(self.onInstallDependencies)
        self.ui.downloadModelButton.clicked.connect(self.onDownloadModel)
        self.ui.cancelDownloadButton.clicked.connect(self.onCancelDownload)
        self.ui.importModelFolderButton.clicked.connect(self.onImportModelFolder)
        self.ui.importModelZipButton.clicked.connect(self.onImportModelZip)
        self.ui.openModelsFolderButton.clicked.connect(self.onOpenModelsFolder)
        self.ui.removeModelButton.clicked.connect(self.onRemoveModel)
        self.ui.openSegmentEditorButton.clicked.connect(self.onOpenSegmentEditor)
        self.ui.removeSegmentsButton.clicked.connect(self.onRemoveSelectedSegments)
        self.ui.removeAllSegmentsButton.clicked.connect(self.onRemoveAllSegments)
        self.ui.undoButton.clicked.connect(self.onUndoLastResult)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        slicer.app.connect("aboutToQuit()", self.logic.shutdown)

        self.initializeParameterNode()
        self.updateSetupStatus()
        self.logic.devices.start()
        self.setProcessingState()

    def _fillChoices(self) -> None:
        for combo, items in (
                (self.ui.modalityComboBox, (("ct", _("CT")), ("mri", _("MRI")), ("pet", _("PET")))),
                (self.ui.modelComboBox, (("nano", _("SAT-Nano")), ("pro", _("SAT-Pro")))),
                (self.ui.deviceComboBox, (("auto", _("Automatic")), ("cuda", _("GPU")), ("cpu", _("CPU")))),
                (self.ui.conflictPolicyComboBox, ((ConflictPolicy.AUTO.value, _("Replace unedited results, else keep both")),
                                                  (ConflictPolicy.REPLACE.value, _("Replace")),
                                                  (ConflictPolicy.KEEP_BOTH.value, _("Keep both")),
                                                  (ConflictPolicy.SKIP.value, _("Skip"))))):
            for value, label in items:
                combo.addItem(label, value)

    def _setupPromptEditing(self) -> None:
        self.completerModel = qt.QStringListModel()
        self.completer = qt.QCompleter(self.completerModel, self.ui.promptLineEdit)
        self.completer.setCaseSensitivity(qt.Qt.CaseInsensitive)
        # the vocabulary already matched synonyms and substrings: show its list as it is, in its order
        self.completer.setCompletionMode(qt.QCompleter.UnfilteredPopupCompletion)
        self.ui.promptLineEdit.setCompleter(self.completer)
        self.completer.connect("activated(QString)", self.onSuggestionChosen)
        self.ui.promptLineEdit.textEdited.connect(self.onPromptEdited)
        self.ui.promptLineEdit.returnPressed.connect(self.onPromptEntered)
        self.ui.addPromptButton.clicked.connect(self.onPromptEntered)
        self.ui.removePromptButton.clicked.connect(self.onRemoveSelectedPrompts)
        self.ui.clearPromptsButton.clicked.connect(self.onClearPrompts)
        self.ui.presetComboBox.addItem(_("Add a preset..."), "")
        for name in self.logic.vocabulary.presets():
            self.ui.presetComboBox.addItem(name, name)
        self.ui.presetComboBox.connect("activated(int)", self.onPresetChosen)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            shortcut = qt.QShortcut(qt.QKeySequence(keys), self.parent)
            shortcut.setContext(qt.Qt.WidgetWithChildrenShortcut)
            shortcut.connect("activated()", self.onRunShortcut)
        deleteShortcut = qt.QShortcut(qt.QKeySequence(qt.QKeySequence.Delete), self.ui.promptListWidget)
        deleteShortcut.setContext(qt.Qt.WidgetShortcut)
        deleteShortcut.connect("activated()", self.onRemoveSelectedPrompts)

    def cleanup(self) -> None:
        self.removeObservers()
        if self.ui is not None:
            self._timer.stop()
            self._volumesTimer.stop()  # its table goes with the widget
        if self.logic:
            self.logic.shutdown()

    def enter(self) -> None:
        if self.ui is not None:
            self.initializeParameterNode()

    def exit(self) -> None:
        if self.ui is not None:
            self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.stopWorker()  # its caches belong to the closed scene's volumes; downloads go on
        self._lastOutcome = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node ----------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not self._parameterNode.inputVolume and firstVolume:
            self._parameterNode.inputVolume = firstVolume

    def setParameterNode(self, inputParameterNode: Optional[SATSegmentParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        node = self._parameterNode
        for combo, value in ((self.ui.modalityComboBox, node.modality), (self.ui.modelComboBox, node.model),
                             (self.ui.deviceComboBox, node.device), (self.ui.conflictPolicyComboBox, node.conflictPolicy)):
            wasBlocked = combo.blockSignals(True)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            combo.blockSignals(wasBlocked)
        self.ui.promptListWidget.clear()
        for prompt in node.prompts:
            item = qt.QListWidgetItem(prompt)
            item.setData(qt.Qt.UserRole, prompt)
            if prompt in node.freeTextPrompts:
                item.setText(_("{prompt} (not in SAT's vocabulary)").format(prompt=prompt))
                item.setForeground(qt.QBrush(qt.QColor("darkorange")))
            self.ui.promptListWidget.addItem(item)
        self.setProcessingState()

    def updateParameterNodeFromGUI(self, *unused) -> None:
        node = self._parameterNode
        if node is None:
            return
        wasModifying = node.StartModify()  # one GUI update at the end, not one per field (it would reset the rest)
        node.modality = self.ui.modalityComboBox.currentData
        node.model = self.ui.modelComboBox.currentData
        node.device = self.ui.deviceComboBox.currentData
        node.conflictPolicy = self.ui.conflictPolicyComboBox.currentData
        node.EndModify(wasModifying)

    def setProcessingState(self) -> None:
        """Every busy/idle state of the panel, from what the logic is doing now (one place for all of it)."""
        node, logic = self._parameterNode, self.logic
        running, downloading = logic.running, bool(logic.models.downloading)
        typed = bool(self.ui.promptLineEdit.text.strip())
        ready = bool(node and node.inputVolume and (node.prompts or typed))
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.enabled = running or ready
        self.ui.applyButton.toolTip = (_("Stop the running segmentation; the scene stays as it was.") if running
                                       else _("Segment the chosen structures (Ctrl+Enter)") if ready
                                       else _("Select an input volume and add at least one structure."))
        self.ui.installDependenciesButton.enabled = not running and bool(logic.dependencies.missing())
        self.ui.downloadModelButton.enabled = not downloading and not self._modelInstalled
        self.ui.cancelDownloadButton.enabled = downloading
        self.ui.downloadProgressBar.visible = downloading
        for button in (self.ui.importModelFolderButton, self.ui.importModelZipButton):
            button.enabled = not downloading
        self.ui.removeModelButton.enabled = not downloading and not running and self._modelInstalled
        output = node.outputSegmentation if node else None
        hasSegments = bool(output and output.GetSegmentation().GetNumberOfSegments())
        self.ui.openSegmentEditorButton.enabled = output is not None
        self.ui.removeSegmentsButton.enabled = self.ui.removeAllSegmentsButton.enabled = hasSegments and not running
        self.ui.undoButton.enabled = not running and self._lastOutcome is not None and self._lastOutcome.canUndo
        if logic.busy:
            self._timer.start()
        else:
            self._timer.stop()

    def onPoll(self) -> None:
        self.logic.poll()
        if not self.logic.busy:
            self._timer.stop()

    # -- prompts -----------------------------------------------------------------------------------

    def _prompts(self) -> PromptList:
        return PromptList.of(self._parameterNode.prompts, self._parameterNode.freeTextPrompts)

    def _setPrompts(self, prompts: PromptList) -> None:
        node = self._parameterNode
        wasModifying = node.StartModify()
        node.freeTextPrompts = list(prompts.freeText)
        node.prompts = list(prompts.prompts)
        node.EndModify(wasModifying)

    def onPromptEdited(self, text: str) -> None:
        suggestions = self.logic.vocabulary.suggestions(text, self._parameterNode.modality)
        self._suggestionTerms = {suggestion.display: suggestion.term for suggestion in suggestions}
        self.completerModel.setStringList(list(self._suggestionTerms))
        if suggestions:
            self.completer.complete()
        self.setProcessingState()

    def onSuggestionChosen(self, display: str) -> None:
        term = self._suggestionTerms.get(display)
        if term:
            self._setPrompts(self._prompts().adding([term]))
            qt.QTimer.singleShot(0, self.ui.promptLineEdit.clear)  # after QCompleter wrote the text
            self.ui.promptWarningLabel.text = ""

    def onPromptEntered(self) -> bool:
        """Resolve the typed text against SAT's vocabulary and add it; returns False if nothing was added."""
        text = self.ui.promptLineEdit.text.strip()
        if not text:
            return False
        term = self._suggestionTerms.get(text)  # Enter on a completion: the line edit holds its display text
        suggestions = []
        if term is None:
            term, suggestions = self.logic.vocabulary.resolve(text, self._parameterNode.modality)
        if term:
            self._setPrompts(self._prompts().adding([term]))
            self.ui.promptLineEdit.clear()
            self.ui.promptWarningLabel.text = ""
            return True
        hint = _("Did you mean: {suggestions}?").format(suggestions=", ".join(suggestions)) if suggestions else ""
        self.ui.promptWarningLabel.text = _("'{text}' is not in SAT's vocabulary. {hint}").format(text=text, hint=hint)
        confirmed = slicer.util.confirmYesNoDisplay(
            _("'{text}' is not a structure SAT was trained on, so its result is unreliable. {hint}\n\n"
              "Add it anyway as free text?").format(text=text, hint=hint), windowTitle=_("Unknown structure"))
        if confirmed:
            self._setPrompts(self._prompts().adding([text], [text]))
            self.ui.promptLineEdit.clear()
        return confirmed

    def onRemoveSelectedPrompts(self) -> None:
        selected = [item.data(qt.Qt.UserRole) for item in self.ui.promptListWidget.selectedItems()]
        self._setPrompts(self._prompts().removing(selected))

    def onClearPrompts(self) -> None:
        self._setPrompts(PromptList())

    def onPresetChosen(self, index: int) -> None:
        name = self.ui.presetComboBox.itemData(index)
        if name:
            self._setPrompts(self._prompts().adding(self.logic.vocabulary.presets()[name]))
        self.ui.presetComboBox.setCurrentIndex(0)

    def onRunShortcut(self) -> None:
        if not self.logic.running and self.ui.applyButton.enabled:
            self.onApplyOrCancel()

    # -- inputs, devices, setup ---------------------------------------------------------------------

    def onInputVolumeChanged(self, volumeNode) -> None:
        modality = self.logic.modalityFromDicom(volumeNode) if volumeNode else None
        if modality:
            self._parameterNode.modality = modality
        self.ui.modalityInfoLabel.text = _("Read from the DICOM header.") if modality else _("Choose the scan type.")
        self.setProcessingState()

    def onRoiCreated(self, roiNode) -> None:
        volume = self._parameterNode.inputVolume
        if volume is not None:
            self.logic.fitRoiToVolume(roiNode, volume)

    def onDevicesKnown(self, info: dict) -> None:
        self._devices = info
        self.updateDeviceInfo()

    def updateDeviceInfo(self) -> None:
        info = self._devices
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

    def onModelChoiceChanged(self, *unused) -> None:
        self.updateParameterNodeFromGUI()
        self.updateSetupStatus()

    def updateSetupStatus(self) -> None:
        """Packages and the chosen model; Setup folds away once both are there (and opens while they are not)."""
        missing = self.logic.dependencies.missing()
        self.ui.dependencyStatusLabel.text = (_("All required Python packages are installed.") if not missing
                                              else _("Missing Python packages: {packages}").format(packages=", ".join(missing)))
        status = self.logic.models.status(self.ui.modelComboBox.currentData)
        self._modelInstalled = bool(status and status.installed)
        if status is not None:
            self.ui.modelStatusLabel.text = (
                _("{model} is installed ({size:.1f} GB).") if status.installed
                else _("{model} is not installed: download it (about {size:.1f} GB) or import the official files.")
            ).format(model=status.display_name, size=status.size_bytes / 1e9)
        self.ui.setupCollapsibleButton.collapsed = not missing and self._modelInstalled
        self.updateDeviceInfo()
        self.setProcessingState()

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
            self.setProcessingState()

    def onDownloadModel(self) -> None:
        if not slicer.util.confirmOkCancelDisplay(self.logic.models.licence(), windowTitle=_("SAT model licence")):
            return
        self.ui.downloadProgressBar.setValue(0)
        self.logic.models.startDownload(self._parameterNode.model)
        self.setProcessingState()

    def onCancelDownload(self) -> None:
        self.logic.models.cancelDownload()

    def onDownloadProgress(self, event: dict) -> None:
        total = event.get("total") or 0
        self.ui.downloadProgressBar.setFormat(event.get("message", "") + " (%p%)")  # the file and megabytes
        self.ui.downloadProgressBar.setValue(int(100 * event.get("current", 0) / total) if total else 0)

    def onDownloadFinished(self, end) -> None:
        self.updateSetupStatus()
        if end.status == "cancelled":
            self.appendLog(_("Download cancelled; the next download resumes where it stopped."))
        elif end.status == "error":
            error = end.error
            message = (_("The download stopped (exit code {code}).").format(code=error.get("exit_code"))
                       if error.get("code") == "download_stopped" else error.get("message", ""))
            slicer.util.errorDisplay(message, detailedText=error.get("hint", ""))

    def _importModel(self, path: str) -> None:
        if path:
            with slicer.util.tryWithErrorDisplay(_("Importing the model failed."), waitCursor=True):
                self.logic.models.importModel(self._parameterNode.model, path)
            self.updateSetupStatus()

    def onImportModelFolder(self) -> None:
        self._importModel(qt.QFileDialog.getExistingDirectory(self.parent, _("Folder with the official SAT files")))

    def onImportModelZip(self) -> None:
        self._importModel(qt.QFileDialog.getOpenFileName(self.parent, _("Zip file with the official SAT files"), "",
                                                         _("Zip files (*.zip)")))

    def onOpenModelsFolder(self) -> None:
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self.logic.models.folder())))

    def onRemoveModel(self) -> None:
        name = self.ui.modelComboBox.currentText
        if slicer.util.confirmYesNoDisplay(_("Delete the downloaded files of {name}?").format(name=name)):
            with slicer.util.tryWithErrorDisplay(_("Removing the model failed.")):
                self.logic.models.remove(self._parameterNode.model)
            self.updateSetupStatus()

    # -- running -----------------------------------------------------------------------------------

    def onApplyOrCancel(self) -> None:
        if self.logic.running:
            self.appendLog(_("Cancelling..."))
            self.logic.cancel()
            return
        if self.ui.promptLineEdit.text.strip() and not self.onPromptEntered():
            return  # the typed structure is part of the request; it was not added
        node = self._parameterNode
        missingPackages = self.logic.dependencies.missing()
        if missingPackages:
            slicer.util.errorDisplay(_("Install the Python packages SAT needs first (Setup, Install...): {packages}").format(
                packages=", ".join(missingPackages)))
            return
        if node.freeTextPrompts and not slicer.util.confirmYesNoDisplay(
                _("These prompts are not in SAT's vocabulary: {prompts}. Run them anyway?").format(
                    prompts=", ".join(node.freeTextPrompts))):
            return
        missingModel = self.logic.models.missing(node.model)
        if missingModel:
            if slicer.util.confirmYesNoDisplay(_("{model} is not installed. Download it now?").format(model=missingModel)):
                self.onDownloadModel()
            return
        try:
            self.logic.run(node)
        except Exception as exc:
            slicer.util.errorDisplay(self.refusalText(exc))
            return
        self._lastOutcome = None
        self.ui.progressBar.setValue(0)
        self.ui.statusLabel.text = _("Starting...")
        self.setProcessingState()

    def refusalText(self, exc: Exception) -> str:
        if getattr(exc, "code", "") == "output_transform":
            return _("The segmentation '{segmentation}' is under another transform than the volume '{volume}', so the "
                     "results would not overlay the scan. Choose 'Create new segmentation on Apply', or put both under "
                     "the same transform.").format(**exc.params)
        return _("Could not start SAT: {error}").format(error=exc)

    def onRunProgress(self, event: dict) -> None:
        self.ui.progressBar.setValue(int(100 * (event.get("fraction") or 0)))
        eta = event.get("eta")
        remaining = _(", about {seconds} s left").format(seconds=int(eta)) if eta is not None else ""
        self.ui.statusLabel.text = f"{event.get('stage', '')}: {event.get('message', '')}{remaining}"

    def onRunFinished(self, outcome) -> None:
        for warning in outcome.warnings:
            self.appendLog(_("Warning: {message}").format(message=warning.get("message", "")))
        if outcome.status == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; nothing was changed.")
            self.ui.progressBar.setValue(0)
        elif outcome.status == "error":
            self.ui.statusLabel.text = _("Failed.")
            self.showRunError(outcome.error)
        else:
            self.ui.progressBar.setValue(100)
            self._lastOutcome = outcome
            self._parameterNode.outputSegmentation = outcome.segmentationNode
            self.ui.statusLabel.text = self.summaryText(outcome)
        self.setProcessingState()

    def summaryText(self, outcome) -> str:
        report = outcome.report
        summary = _("{added} segments added to '{segmentation}'.").format(
            added=len(report.added), segmentation=outcome.segmentationNode.GetName())
        if report.keptBoth:
            summary += " " + _("Kept your segments: {names}.").format(names=", ".join(report.keptBoth))
        if report.skipped:
            summary += " " + _("Skipped: {names}.").format(names=", ".join(report.skipped))
        if outcome.outputReplaced:
            summary += " " + _("The chosen segmentation was deleted during the run, so a new one holds the results.")
        return summary

    def showRunError(self, error: dict) -> None:
        code = error.get("code")
        message = error.get("message", _("Unknown error"))
        if code == "input_removed":
            message = _("The input volume was deleted during the run, so the results were not added.")
        elif code in ("internal_error", "result_unreadable") and "detail" in error:  # the runner's own errors
            message = _("The results could not be added to the scene: {detail}").format(detail=error["detail"])
        elif code == "out_of_memory":
            message += "\n\n" + _("Try: draw an ROI around the structures, choose SAT-Nano, or run on the CPU.")
        elif code == "model_error" and self.logic.models.missing(self._parameterNode.model):
            if slicer.util.confirmYesNoDisplay(message + "\n\n" + _("Download the model now?")):
                self.onDownloadModel()
            return
        slicer.util.errorDisplay(message, detailedText=error.get("hint", ""))

    def appendLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)
        logging.debug("SATSegment: %s", line)

    # -- results -----------------------------------------------------------------------------------

    def onOutputChanged(self, node) -> None:
        if self._observedSegmentation is not None:
            self.removeObservers(self.onSegmentationChanged)
        self._observedSegmentation = node.GetSegmentation() if node else None
        if node is not None:
            for event in (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                          slicer.vtkSegmentation.SegmentModified):
                self.addObserver(self._observedSegmentation, event, self.onSegmentationChanged)
        self.ui.segmentsTableView.setSegmentationNode(node)
        self.ui.show3DButton.setSegmentationNode(node)
        self.updateVolumes()
        self.setProcessingState()

    def onSegmentationChanged(self, caller, event) -> None:
        self._volumesTimer.start()  # once edits pause
        self.setProcessingState()

    def updateVolumes(self) -> None:
        node = self._parameterNode.outputSegmentation if self._parameterNode else None
        volumes = self.logic.segmentVolumes(node) if node else {}
        table = self.ui.volumesTableWidget
        table.setRowCount(len(volumes))
        for row, (name, ml) in enumerate(volumes.items()):
            table.setItem(row, 0, qt.QTableWidgetItem(name))
            table.setItem(row, 1, qt.QTableWidgetItem(f"{ml:.1f}"))

    def onRemoveSelectedSegments(self) -> None:
        segmentation = self._parameterNode.outputSegmentation.GetSegmentation()
        for segmentId in self.ui.segmentsTableView.selectedSegmentIDs():
            segmentation.RemoveSegment(segmentId)

    def onRemoveAllSegments(self) -> None:
        node = self._parameterNode.outputSegmentation
        if slicer.util.confirmYesNoDisplay(_("Delete all {count} segments of '{name}'?").format(
                count=node.GetSegmentation().GetNumberOfSegments(), name=node.GetName())):
            node.GetSegmentation().RemoveAllSegments()

    def onUndoLastResult(self) -> None:
        outcome, self._lastOutcome = self._lastOutcome, None
        outcome.undo()
        self.ui.statusLabel.text = _("The last result was undone.")
        self.setProcessingState()

    def onOpenSegmentEditor(self) -> None:
        node = self._parameterNode.outputSegmentation
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(node)
        editor.setSourceVolumeNode(self._parameterNode.inputVolume)
        outcome = self._lastOutcome
        if outcome is not None and outcome.segmentationNode is node and outcome.report.added:
            editor.setCurrentSegmentID(outcome.report.added[0])


class SATSegmentLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """`ModuleLogic` (the Qt-free parts put together) with the module's parameter node."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        ModuleLogic.__init__(self, paths.resourcesDir() / "requirements.txt", installTorch, slicer.util.pip_install,
                             lambda: slicer.app.temporaryPath)

    def getParameterNode(self) -> SATSegmentParameterNode:
        return SATSegmentParameterNode(super().getParameterNode())

    def modalityFromDicom(self, volumeNode) -> Optional[str]:
        return self.dicomModality(volumeNode, getattr(slicer, "dicomDatabase", None))

    def run(self, parameterNode: SATSegmentParameterNode) -> str:
        """Start a run of what the parameter node says; its outcome arrives through `onRunFinished`."""
        node = parameterNode
        return self.start(node.inputVolume, list(node.prompts), node.modality, model=node.model, device=node.device,
                          roiNode=node.roi, outputSegmentationNode=node.outputSegmentation,
                          policy=ConflictPolicy(node.conflictPolicy), allowFreeText=bool(node.freeTextPrompts))


class SATSegmentTest(ScriptedLoadableModuleTest):
    """Self-test inside Slicer: logic on sample data; inference only when SAT-Nano is installed."""

    RUN_TIMEOUT_S = 900

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_DependenciesAndVocabulary()
        self.setUp()
        self.test_SegmentSampleData()

    def test_DependenciesAndVocabulary(self):
        logic = SATSegmentLogic()
        self.assertIsInstance(logic.dependencies.missing(), list)
        self.assertEqual(logic.vocabulary.resolve("Liver", "ct"), ("liver", []))
        self.assertIsNone(logic.vocabulary.resolve("banana", "ct")[0])
        self.assertIn("Abdominal organs", logic.vocabulary.presets())

    def test_SegmentSampleData(self):
        logic = SATSegmentLogic()
        if logic.dependencies.missing() or logic.models.missing("nano"):
            self.delayDisplay("SAT-Nano or its Python packages are not installed: inference test skipped")
            return
        volumeNode = slicer.util.loadVolume(str(paths.resourcesDir() / "Samples" / "example_ct_sm.nii.gz"))
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = volumeNode
        parameterNode.prompts, parameterNode.modality = ["liver", "spleen"], "ct"
        outcomes = []
        logic.onRunFinished = outcomes.append
        logic.run(parameterNode)
        deadline = time.monotonic() + self.RUN_TIMEOUT_S
        while not outcomes and time.monotonic() < deadline:
            slicer.app.processEvents()
            logic.poll()
            time.sleep(0.05)
        logic.shutdown()
        self.assertTrue(outcomes, f"no result within {self.RUN_TIMEOUT_S} s")
        outcome = outcomes[0]
        self.assertEqual(outcome.status, "done", outcome.error)
        segmentation = outcome.segmentationNode.GetSegmentation()
        self.assertEqual([segmentation.GetSegment(i).GetName() for i in outcome.report.added], ["liver", "spleen"])
        self.delayDisplay("Test passed")
