"""SATSegment: type anatomy names, get editable segments. SAT runs in a background worker process.

The module is a thin shell: the widget (prompts with completion, progress, cancel), and a logic that
delegates to `SATSegmentSlicerLib` (Qt-free, tested in CI) and `SATSegmentLib` (the engine, which
runs in a separate Python process). Heavy packages (torch, transformers, monai) are never imported here.
"""

import json
import logging
from typing import Optional

import ctk
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

from SATSegmentSlicerLib import dependencies, devices, paths
from SATSegmentSlicerLib.policies import ConflictPolicy

paths.ensureLibraryImportable()

MODALITIES = [("ct", "CT"), ("mri", "MRI"), ("pet", "PET")]
MODELS = [("nano", "SAT-Nano"), ("pro", "SAT-Pro")]
DEVICES = [("auto", "Automatic"), ("cuda", "GPU"), ("cpu", "CPU")]
POLL_INTERVAL_MS = 100


#
# SATSegment
#


class SATSegment(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SAT Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["SATSegment developers"]
        self.parent.helpText = _(
            "Segment anatomy in CT, MRI and PET by typing its name (for example <i>liver</i>, "
            "<i>left parotid gland</i>, <i>L3</i>). SAT runs on this computer, in a background process, on the GPU "
            "or the CPU; results are segments you can edit in the Segment Editor. "
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


#
# SATSegmentParameterNode
#


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


#
# SATSegmentWidget
#


class SATSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Prompt box with completion, presets, run/cancel with progress, model and dependency setup."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._suggestionTerms = {}
        self._lastSegmentIds = []
        self._lastSegmentationNode = None
        self._gpus = []

    # -- setup -------------------------------------------------------------------------------------

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(str(paths.resourcesDir() / "UI" / "SATSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SATSegmentLogic()
        self.logic.onProgress = self.onRunProgress
        self.logic.onFinished = self.onRunFinished
        self.logic.onLog = self.appendLog

        for combo, items in ((self.ui.modalityComboBox, MODALITIES), (self.ui.modelComboBox, MODELS),
                             (self.ui.deviceComboBox, DEVICES)):
            for value, label in items:
                combo.addItem(_(label), value)
        for policy, label in ((ConflictPolicy.AUTO, _("Replace unedited SAT segments, else keep both")),
                              (ConflictPolicy.REPLACE, _("Replace")), (ConflictPolicy.KEEP_BOTH, _("Keep both")),
                              (ConflictPolicy.SKIP, _("Skip"))):
            self.ui.conflictPolicyComboBox.addItem(label, policy.value)

        self._setupPromptEditing()
        self.ui.modalityComboBox.currentIndexChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.modelComboBox.currentIndexChanged.connect(self.onModelChoiceChanged)
        self.ui.deviceComboBox.currentIndexChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.conflictPolicyComboBox.currentIndexChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.inputVolumeSelector.currentNodeChanged.connect(self.onInputVolumeChanged)
        self.ui.applyButton.clicked.connect(self.onApplyOrCancel)
        self.ui.installDependenciesButton.clicked.connect(self.onInstallDependencies)
        self.ui.downloadModelButton.clicked.connect(self.onDownloadModel)
        self.ui.cancelDownloadButton.clicked.connect(self.logic.cancelDownload)
        self.ui.importModelFolderButton.clicked.connect(lambda: self.onImportModel(folder=True))
        self.ui.importModelZipButton.clicked.connect(lambda: self.onImportModel(folder=False))
        self.ui.openModelsFolderButton.clicked.connect(self.onOpenModelsFolder)
        self.ui.removeModelButton.clicked.connect(self.onRemoveModel)
        self.ui.show3DButton.clicked.connect(self.onShow3D)
        self.ui.openSegmentEditorButton.clicked.connect(self.onOpenSegmentEditor)
        self.ui.computeVolumesButton.clicked.connect(self.onComputeVolumes)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        slicer.app.connect("aboutToQuit()", self.logic.shutdown)

        self.initializeParameterNode()
        self.updateDependencyStatus()
        self.updateModelList()
        self.logic.queryDevices(self.onDevicesKnown)

    def _setupPromptEditing(self) -> None:
        self.completerModel = qt.QStringListModel()
        self.completer = qt.QCompleter(self.completerModel, self.ui.promptLineEdit)
        self.completer.setCaseSensitivity(qt.Qt.CaseInsensitive)
        # complete() already matched synonyms and substrings: show its list as it is, in its order
        self.completer.setCompletionMode(qt.QCompleter.UnfilteredPopupCompletion)
        self.ui.promptLineEdit.setCompleter(self.completer)
        self.completer.connect("activated(QString)", self.onSuggestionChosen)
        self.ui.promptLineEdit.textEdited.connect(self.onPromptEdited)
        self.ui.promptLineEdit.returnPressed.connect(self.onPromptEntered)
        self.ui.addPromptButton.clicked.connect(self.onPromptEntered)
        self.ui.removePromptButton.clicked.connect(self.onRemoveSelectedPrompts)
        self.ui.clearPromptsButton.clicked.connect(lambda: self.setPrompts([], []))
        self.ui.presetComboBox.addItem(_("Add a preset..."), "")
        for name in self.logic.presets():
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
        if self.logic:
            self.logic.shutdown()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.stopWorker()  # its caches belong to the closed scene's volumes; downloads go on
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node ----------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

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
        if node is None:
            return
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
        self.updateApplyButton()

    def updateParameterNodeFromGUI(self, *unused) -> None:
        node = self._parameterNode
        if node is None:
            return
        node.modality = self.ui.modalityComboBox.currentData
        node.model = self.ui.modelComboBox.currentData
        node.device = self.ui.deviceComboBox.currentData
        node.conflictPolicy = self.ui.conflictPolicyComboBox.currentData

    def updateApplyButton(self) -> None:
        if self.logic.busy:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the running segmentation; the scene stays as it was.")
            self.ui.applyButton.enabled = True
            return
        node = self._parameterNode
        ready = bool(node and node.inputVolume and node.prompts)
        self.ui.applyButton.text = _("Apply")
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (_("Segment the chosen structures (Ctrl+Enter)") if ready
                                       else _("Select an input volume and add at least one structure."))

    # -- prompts -----------------------------------------------------------------------------------

    def setPrompts(self, prompts, freeText) -> None:
        self._parameterNode.freeTextPrompts = [p for p in dict.fromkeys(freeText) if p in prompts]
        self._parameterNode.prompts = list(dict.fromkeys(prompts))

    def addPrompts(self, terms, freeText=()) -> None:
        node = self._parameterNode
        self.setPrompts(list(node.prompts) + list(terms), list(node.freeTextPrompts) + list(freeText))

    def onPromptEdited(self, text: str) -> None:
        suggestions = self.logic.suggestions(text, self._parameterNode.modality)
        self._suggestionTerms = {suggestion.display: suggestion.term for suggestion in suggestions}
        self.completerModel.setStringList(list(self._suggestionTerms))
        if suggestions:
            self.completer.complete()

    def onSuggestionChosen(self, display: str) -> None:
        term = self._suggestionTerms.get(display)
        if term:
            self.addPrompts([term])
            qt.QTimer.singleShot(0, self.ui.promptLineEdit.clear)  # after QCompleter wrote the text
            self.ui.promptWarningLabel.text = ""

    def onPromptEntered(self) -> bool:
        """Resolve the typed text against SAT's vocabulary and add it; returns False if nothing was added."""
        text = self.ui.promptLineEdit.text.strip()
        if not text:
            return False
        # Enter on a completion: the line edit holds the suggestion's display text
        term = self._suggestionTerms.get(text)
        suggestions = []
        if term is None:
            term, suggestions = self.logic.resolvePrompt(text, self._parameterNode.modality)
        if term:
            self.addPrompts([term])
            self.ui.promptLineEdit.clear()
            self.ui.promptWarningLabel.text = ""
            return True
        hint = _("Did you mean: {suggestions}?").format(suggestions=", ".join(suggestions)) if suggestions else ""
        self.ui.promptWarningLabel.text = _("'{text}' is not in SAT's vocabulary. {hint}").format(text=text, hint=hint)
        confirmed = slicer.util.confirmYesNoDisplay(
            _("'{text}' is not a structure SAT was trained on, so its result is unreliable. {hint}\n\n"
              "Add it anyway as free text?").format(text=text, hint=hint),
            windowTitle=_("Unknown structure"))
        if confirmed:
            self.addPrompts([text], [text])
            self.ui.promptLineEdit.clear()
        return confirmed

    def onRemoveSelectedPrompts(self) -> None:
        selected = {item.data(qt.Qt.UserRole) for item in self.ui.promptListWidget.selectedItems()}
        node = self._parameterNode
        self.setPrompts([p for p in node.prompts if p not in selected], node.freeTextPrompts)

    def onPresetChosen(self, index: int) -> None:
        name = self.ui.presetComboBox.itemData(index)
        if name:
            self.addPrompts(self.logic.presets()[name])
        self.ui.presetComboBox.setCurrentIndex(0)

    def onRunShortcut(self) -> None:
        if self.ui.promptLineEdit.text.strip() and not self.onPromptEntered():
            return
        if self.ui.applyButton.enabled and not self.logic.busy:
            self.onApplyOrCancel()

    # -- inputs and devices ------------------------------------------------------------------------

    def onInputVolumeChanged(self, volumeNode) -> None:
        if self._parameterNode is None:
            return
        modality = self.logic.modalityFromDicom(volumeNode) if volumeNode else None
        if modality:
            self._parameterNode.modality = modality
            self.ui.modalityInfoLabel.text = _("from the DICOM header")
        else:
            self.ui.modalityInfoLabel.text = _("choose the scan type")
        self.updateApplyButton()

    def onDevicesKnown(self, info: dict) -> None:
        self._gpus = info.get("gpus", [])
        self.onModelChoiceChanged()

    def onModelChoiceChanged(self, *unused) -> None:
        self.updateParameterNodeFromGUI()
        gpus = self._gpus
        text = (", ".join(_("{name} ({memory} GB)").format(name=g["name"], memory=g["memory_gb"]) for g in gpus)
                if gpus else _("No CUDA GPU found: SAT will run on the CPU (minutes per scan)."))
        info = self.logic.modelInfo(self.ui.modelComboBox.currentData)
        needs = devices.memoryText(gpus, info.get("variant"), info.get("display_name", ""))
        self.ui.deviceInfoLabel.text = text + ("\n" + needs if needs else "")

    # -- setup: dependencies and models ------------------------------------------------------------

    def updateDependencyStatus(self) -> None:
        missing = self.logic.missingDependencies()
        self.ui.dependencyStatusLabel.text = (_("All required Python packages are installed.") if not missing
                                              else _("Missing: {packages}").format(packages=", ".join(missing)))
        self.ui.installDependenciesButton.enabled = bool(missing)

    def onInstallDependencies(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Installing Python packages failed."), waitCursor=True):
            self.logic.installDependencies()
        self.updateDependencyStatus()

    def updateModelList(self) -> None:
        self.ui.modelListWidget.clear()
        for row in self.logic.modelStatuses():
            state = _("installed") if row.installed else _("not installed, about {size:.1f} GB").format(size=row.size_bytes / 1e9)
            item = qt.QListWidgetItem(f"{row.display_name}: {state}")
            item.setData(qt.Qt.UserRole, row.name)
            self.ui.modelListWidget.addItem(item)

    def selectedModelName(self) -> str:
        item = self.ui.modelListWidget.currentItem()
        return item.data(qt.Qt.UserRole) if item else self.ui.modelComboBox.currentData

    def onDownloadModel(self, name: Optional[str] = None) -> None:
        name = name or self.selectedModelName()
        if not slicer.util.confirmOkCancelDisplay(self.logic.licenceText(), windowTitle=_("SAT model licence")):
            return
        self.ui.downloadProgressBar.setValue(0)
        self.ui.downloadProgressBar.visible = True
        self.ui.cancelDownloadButton.enabled = True
        self.ui.downloadModelButton.enabled = False
        self.logic.startDownload(name, self.onDownloadProgress, self.onDownloadFinished)

    def onDownloadProgress(self, event: dict) -> None:
        total = event.get("total") or 0
        self.ui.downloadProgressBar.setValue(int(100 * event.get("current", 0) / total) if total else 0)
        self.ui.downloadProgressBar.setFormat(f"{event.get('file', '')} %p%")

    def onDownloadFinished(self, event: dict) -> None:
        self.ui.downloadProgressBar.visible = False
        self.ui.cancelDownloadButton.enabled = False
        self.ui.downloadModelButton.enabled = True
        self.updateModelList()
        if event.get("event") == "error":
            slicer.util.errorDisplay(event.get("message", ""), detailedText=event.get("hint", ""))

    def onImportModel(self, folder: bool) -> None:
        if folder:
            path = qt.QFileDialog.getExistingDirectory(self.parent, _("Folder with the official SAT files"))
        else:
            path = qt.QFileDialog.getOpenFileName(self.parent, _("Zip file with the official SAT files"), "", "Zip (*.zip)")
        if path:
            with slicer.util.tryWithErrorDisplay(_("Importing the model failed."), waitCursor=True):
                self.logic.importModel(self.selectedModelName(), path)
            self.updateModelList()

    def onOpenModelsFolder(self) -> None:
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self.logic.modelsFolder())))

    def onRemoveModel(self) -> None:
        name = self.selectedModelName()
        if slicer.util.confirmYesNoDisplay(_("Delete the downloaded files of {name}?").format(name=name)):
            with slicer.util.tryWithErrorDisplay(_("Removing the model failed.")):
                self.logic.removeModel(name)
            self.updateModelList()

    # -- running -----------------------------------------------------------------------------------

    def onApplyOrCancel(self) -> None:
        if self.logic.busy:
            self.appendLog(_("Cancelling..."))
            self.logic.cancel()
            return
        node = self._parameterNode
        missingPackages = self.logic.missingDependencies()
        if missingPackages:
            slicer.util.errorDisplay(_("Install the Python packages SAT needs first (Setup, Install...): {packages}").format(
                packages=", ".join(missingPackages)))
            return
        if node.freeTextPrompts and not slicer.util.confirmYesNoDisplay(
                _("These prompts are not in SAT's vocabulary: {prompts}. Run them anyway?").format(
                    prompts=", ".join(node.freeTextPrompts))):
            return
        missingModel = self.logic.modelMissing(node.model)
        if missingModel and slicer.util.confirmYesNoDisplay(
                _("{model} is not installed. Download it now?").format(model=missingModel)):
            self.onDownloadModel(node.model)
            return
        try:
            self.logic.run(node)
        except Exception as exc:
            slicer.util.errorDisplay(_("Could not start SAT: {error}").format(error=exc))
            return
        self.ui.progressBar.setValue(0)
        self.ui.statusLabel.text = _("Starting...")
        self.updateApplyButton()

    def onRunProgress(self, event: dict) -> None:
        self.ui.progressBar.setValue(int(100 * (event.get("fraction") or 0)))
        eta = event.get("eta")
        remaining = _(", about {seconds} s left").format(seconds=int(eta)) if eta is not None else ""
        self.ui.statusLabel.text = f"{event.get('stage', '')}: {event.get('message', '')}{remaining}"

    def onRunFinished(self, outcome) -> None:
        self.updateApplyButton()
        for warning in outcome.warnings:
            self.appendLog(_("Warning: {message}").format(message=warning.get("message", "")))
        if outcome.status == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; nothing was changed.")
            self.ui.progressBar.setValue(0)
            return
        if outcome.status == "error":
            self.ui.statusLabel.text = _("Failed.")
            self.showRunError(outcome.error)
            return
        self.ui.progressBar.setValue(100)
        self._lastSegmentationNode = outcome.segmentationNode
        self._lastSegmentIds = outcome.report.added
        self._parameterNode.outputSegmentation = outcome.segmentationNode
        report = outcome.report
        summary = _("{added} segments added").format(added=len(report.added))
        if report.keptBoth:
            summary += _("; kept existing: {names}").format(names=", ".join(report.keptBoth))
        if report.skipped:
            summary += _("; skipped: {names}").format(names=", ".join(report.skipped))
        self.ui.statusLabel.text = summary
        self.showVolumes(self.logic.segmentVolumes(outcome.segmentationNode, report.added))

    def showRunError(self, error: dict) -> None:
        code = error.get("code")
        message = error.get("message", _("Unknown error"))
        if code == "out_of_memory":
            message += "\n\n" + _("Try: draw an ROI around the structures, choose SAT-Nano, or run on the CPU.")
        if code == "model_error" and self.logic.modelMissing(self._parameterNode.model):
            if slicer.util.confirmYesNoDisplay(message + "\n\n" + _("Download the model now?")):
                self.onDownloadModel(self._parameterNode.model)
            return
        slicer.util.errorDisplay(message, detailedText=error.get("hint", ""))

    def appendLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)
        logging.debug("SATSegment: %s", line)

    # -- results -----------------------------------------------------------------------------------

    def showVolumes(self, volumes: dict) -> None:
        table = self.ui.volumesTableWidget
        table.setRowCount(len(volumes))
        for row, (name, ml) in enumerate(volumes.items()):
            table.setItem(row, 0, qt.QTableWidgetItem(name))
            table.setItem(row, 1, qt.QTableWidgetItem(f"{ml:.1f}"))

    def onComputeVolumes(self) -> None:
        node = self._parameterNode.outputSegmentation
        if node:
            ids = vtk.vtkStringArray()
            node.GetSegmentation().GetSegmentIDs(ids)
            self.showVolumes(self.logic.segmentVolumes(node, [ids.GetValue(i) for i in range(ids.GetNumberOfValues())]))

    def onShow3D(self) -> None:
        node = self._parameterNode.outputSegmentation
        if node:
            node.CreateClosedSurfaceRepresentation()
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)

    def onOpenSegmentEditor(self) -> None:
        node = self._parameterNode.outputSegmentation
        if not node:
            return
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(node)
        editor.setSourceVolumeNode(self._parameterNode.inputVolume)
        if node is self._lastSegmentationNode and self._lastSegmentIds:
            editor.setCurrentSegmentID(self._lastSegmentIds[0])
            for table in slicer.util.findChildren(editor, className="qMRMLSegmentsTableView"):
                table.setSelectedSegmentIDs(self._lastSegmentIds)


#
# SATSegmentLogic
#


class SATSegmentLogic(ScriptedLoadableModuleLogic):
    """MRML and process work of the module; the Qt-free parts live in SATSegmentSlicerLib."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.onProgress = lambda event: None
        self.onFinished = lambda outcome: None
        self.onLog = lambda line: None
        self._runner = None
        self._download = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self._poll)

    def getParameterNode(self) -> SATSegmentParameterNode:
        return SATSegmentParameterNode(super().getParameterNode())

    # vocabulary (pure Python, loaded on first use)

    def suggestions(self, text: str, modality: str, limit: int = 15) -> list:
        from SATSegmentLib import vocabulary

        return vocabulary.complete(text, modality=modality, limit=limit) if text.strip() else []

    def resolvePrompt(self, text: str, modality: str) -> tuple:
        """(SAT term, []) if SAT knows the text, else (None, suggestions)."""
        from SATSegmentLib import errors, vocabulary

        try:
            return vocabulary.resolve(text, modality), []
        except errors.UnknownPromptError as exc:
            return None, exc.suggestions

    def presets(self) -> dict:
        from SATSegmentLib import vocabulary

        return vocabulary.presets()

    def modalityFromDicom(self, volumeNode) -> Optional[str]:
        from SATSegmentSlicerLib import volumes

        return volumes.modalityFromDicom(volumeNode, getattr(slicer, "dicomDatabase", None))

    # dependencies

    def missingDependencies(self) -> list:
        missing = dependencies.missingRequirements(self._requirements())
        return (["torch" + dependencies.TORCH_REQUIREMENT] if dependencies.torchMissing() else []) + missing

    def _requirements(self) -> list:
        return dependencies.readRequirements(paths.resourcesDir() / "requirements.txt")

    def installDependencies(self) -> None:
        """torch through the PyTorch extension, the rest with pip, after one confirmation listing all."""
        missing = self.missingDependencies()
        if not missing or not slicer.util.confirmOkCancelDisplay(
                _("SATSegment will install these Python packages into Slicer:\n\n{packages}\n\n"
                  "torch comes from the PyTorch extension. This can take several minutes.").format(
                    packages="\n".join(missing)), windowTitle=_("Install Python packages")):
            return
        if dependencies.torchMissing():
            try:
                import PyTorchUtils
            except ImportError:
                raise RuntimeError(_("The PyTorch extension is required: install it from the Extensions Manager, "
                                     "restart Slicer, and press Install again."))
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=dependencies.TORCH_REQUIREMENT)
            if torch is None:
                raise RuntimeError(_("PyTorch was not installed (or needs a restart): restart Slicer and press Install again."))
        remaining = dependencies.missingRequirements(self._requirements())
        if remaining:
            slicer.util.pip_install(remaining)

    # models

    def _modelstore(self):
        from SATSegmentLib import modelstore

        return modelstore

    def modelStatuses(self) -> list:
        return self._modelstore().list_models()

    def modelInfo(self, name: str) -> dict:
        return self._modelstore().registry().get(name, {})

    def modelMissing(self, name: str) -> Optional[str]:
        """Display name of the chosen registry model if it is not installed, else None."""
        store = self._modelstore()
        if name in store.registry() and name not in store.installed():
            return store.registry()[name]["display_name"]
        return None

    def licenceText(self) -> str:
        return self._modelstore().licence_note()

    def modelsFolder(self):
        folder = self._modelstore().model_home() / "models"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def importModel(self, name: str, path: str) -> None:
        self._modelstore().import_model(name, path)

    def removeModel(self, name: str) -> None:
        self._modelstore().remove(name)

    def startDownload(self, name: str, onProgress, onFinished) -> None:
        """Download in a child process (`SATSegmentSlicerLib.modeldownload`); the GUI keeps running."""
        from SATSegmentSlicerLib.worker import WorkerClient

        finished = []

        def onEvent(event):
            if event.get("event") == "progress":
                onProgress(event)
            elif event.get("event") in ("result", "error"):
                finished.append(event)
                onFinished(event)

        def onExit(returnCode):
            self._download = None
            if not finished:
                onFinished({"event": "error", "message": _("The download stopped (exit code {code}).").format(code=returnCode),
                            "hint": _("See the log panel; downloading again resumes where it stopped.")})

        command = [paths.pythonExecutable(), "-m", "SATSegmentSlicerLib.modeldownload", name]
        self._download = WorkerClient(command, paths.workerEnvironment(), onEvent, self.onLog, onExit=onExit)
        self._download.start()
        self._timer.start()

    def cancelDownload(self) -> None:
        if self._download:
            self.onLog(_("Download cancelled; it resumes where it stopped next time."))
            self._download.kill()  # its exit reports the end of the download

    # devices

    def queryDevices(self, callback) -> None:
        """Ask a child Python which GPUs torch sees; `callback(info)` runs when it answers."""
        if dependencies.torchMissing():
            callback({"cuda": False, "gpus": []})
            return
        process = qt.QProcess()
        environment = qt.QProcessEnvironment()
        for key, value in paths.workerEnvironment().items():
            environment.insert(key, value)
        process.setProcessEnvironment(environment)

        def finished(*unused):
            try:
                callback(json.loads(process.readAllStandardOutput().data().decode() or "{}"))
            except ValueError:
                callback({"cuda": False, "gpus": []})

        process.connect("finished(int,QProcess::ExitStatus)", finished)
        process.start(paths.pythonExecutable(), ["-m", "SATSegmentSlicerLib.devices"])
        self._deviceProcess = process  # keep it alive until it finishes

    # running

    @property
    def busy(self) -> bool:
        return self._runner is not None and self._runner.busy

    def runner(self):
        """The persistent runner (its worker keeps the model loaded between runs)."""
        if self._runner is None:
            from SATSegmentSlicerLib.runner import SegmentationRunner
            from SATSegmentSlicerLib.worker import WorkerClient

            client = WorkerClient(paths.workerCommand("serve"), paths.workerEnvironment(), onLog=self.onLog)
            self._runner = SegmentationRunner(client, self._forwardProgress, self._forwardFinished,
                                              tempRoot=slicer.app.temporaryPath)
        return self._runner

    def run(self, parameterNode: SATSegmentParameterNode) -> str:
        """Start a run in the background; results arrive through `onFinished`."""
        from SATSegmentSlicerLib.runner import RunRequest

        node = parameterNode
        request = RunRequest(
            volumeNode=node.inputVolume, prompts=list(node.prompts), modality=node.modality, model=node.model,
            device=node.device, roiNode=node.roi, outputSegmentationNode=node.outputSegmentation,
            policy=ConflictPolicy(node.conflictPolicy), allowFreeText=bool(node.freeTextPrompts))
        jobId = self.runner().start(request)
        self._timer.start()
        return jobId

    def cancel(self) -> None:
        if self._runner:
            self._runner.cancel()

    def _forwardProgress(self, event: dict) -> None:
        self.onProgress(event)

    def _forwardFinished(self, outcome) -> None:
        self.onFinished(outcome)

    def _poll(self) -> None:
        if self._runner:
            self._runner.poll()
        if self._download:
            self._download.poll()
        if not self.busy and not self._download:
            self._timer.stop()

    def segmentVolumes(self, segmentationNode, segmentIds) -> dict:
        from SATSegmentSlicerLib.segments import segmentVolumeMl

        segmentation = segmentationNode.GetSegmentation()
        return {segmentation.GetSegment(i).GetName(): segmentVolumeMl(segmentation.GetSegment(i))
                for i in segmentIds if segmentation.GetSegment(i)}

    def stopWorker(self) -> None:
        """Stop the worker (a running job ends as cancelled); the next run starts a new one."""
        if self._runner:
            self._runner.shutdown()
            self._runner = None

    def shutdown(self) -> None:
        """Stop the worker and any download (module cleanup, application exit)."""
        self.stopWorker()
        self.cancelDownload()
        self._timer.stop()


#
# SATSegmentTest
#


class SATSegmentTest(ScriptedLoadableModuleTest):
    """Self-test inside Slicer: logic on sample data; inference only when a SAT model is installed."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_DependenciesAndVocabulary()
        self.setUp()
        self.test_SegmentSampleData()

    def test_DependenciesAndVocabulary(self):
        logic = SATSegmentLogic()
        self.assertIsInstance(logic.missingDependencies(), list)
        term, suggestions = logic.resolvePrompt("Liver", "ct")
        self.assertEqual((term, suggestions), ("liver", []))
        term, suggestions = logic.resolvePrompt("banana", "ct")
        self.assertIsNone(term)
        self.assertIn("Abdominal organs", logic.presets())

    def test_SegmentSampleData(self):
        logic = SATSegmentLogic()
        if logic.missingDependencies() or logic.modelMissing("nano"):
            self.delayDisplay("SAT-Nano or its Python packages are not installed: inference test skipped")
            return
        volumeNode = slicer.util.loadVolume(str(paths.resourcesDir() / "Samples" / "example_ct_sm.nii.gz"))
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = volumeNode
        parameterNode.prompts, parameterNode.modality = ["liver", "spleen"], "ct"
        outcomes = []
        logic.onFinished = outcomes.append
        logic.run(parameterNode)
        while not outcomes:
            slicer.app.processEvents()
        logic.shutdown()
        outcome = outcomes[0]
        self.assertEqual(outcome.status, "done", outcome.error)
        segmentation = outcome.segmentationNode.GetSegmentation()
        self.assertEqual([segmentation.GetSegment(i).GetName() for i in outcome.report.added], ["liver", "spleen"])
        self.delayDisplay("Test passed")
