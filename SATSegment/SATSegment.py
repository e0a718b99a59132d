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

from SATSegmentSlicerLib import paths, versions
from SATSegmentSlicerLib.dependencies import TORCH_REQUIREMENT
from SATSegmentSlicerLib.logic import ModuleLogic, ServerChoice
from SATSegmentSlicerLib.policies import ConflictPolicy
from SATSegmentWidgets.computepanel import ComputePanel
from SATSegmentWidgets.promptentry import PromptEntry
from SATSegmentWidgets.results import ResultsPanel
from SATSegmentWidgets.runpanel import RunPanel
from SATSegmentWidgets.setuppanel import SetupPanel

paths.ensureLibraryImportable()

POLL_INTERVAL_MS = 100


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
            "or the CPU, or on your department's SATSegment server; results are segments you can edit in the Segment "
            "Editor, and export to DICOM SEG or RTSTRUCT. Needs Slicer 5.10 or later. "
            'See the <a href="https://github.com/SATSegment/SlicerSATSegment">documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "SAT: Zhao Z. et al., One Model to Rule them All: Towards Universal Segmentation for Medical Images "
            "with Text Prompts, arXiv:2312.17183. No image data leaves this computer unless you choose to compute on a "
            "server and type its address; model weights are downloaded "
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
    names: str = "sat"  # segment names: SAT terms ('sat') or TG-263 names ('tg263')


class SATSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: its parts (setup, compute, prompts, run, results) on one parameter node; logic passed in or made."""

    def __init__(self, parent=None, logic: Optional["SATSegmentLogic"] = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = logic
        self.ui = None  # stays None on a Slicer too old for SATSegment
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.setupPanel = self.compute = self.prompts = self.run = self.results = None

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
        self.setupPanel, self.compute = SetupPanel(self), ComputePanel(self)
        self.prompts, self.run, self.results = PromptEntry(self), RunPanel(self), ResultsPanel(self)
        self.logic.setCallbacks(onLog=self.appendLog, onRunProgress=self.run.onRunProgress,
                                onRunFinished=self.run.onRunFinished, onDownloadProgress=self.setupPanel.onDownloadProgress,
                                onDownloadFinished=self.setupPanel.onDownloadFinished, onDevicesKnown=self.setupPanel.onDevicesKnown)
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self.onPoll)
        self._fillChoices()
        for part in (self.setupPanel, self.compute, self.prompts, self.run, self.results):
            part.connect()
        for combo in (self.ui.modalityComboBox, self.ui.deviceComboBox, self.ui.conflictPolicyComboBox, self.ui.namesComboBox):
            combo.currentIndexChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.inputVolumeSelector.currentNodeChanged.connect(self.onInputVolumeChanged)
        self.ui.roiSelector.nodeAddedByUser.connect(self.onRoiCreated)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            shortcut = qt.QShortcut(qt.QKeySequence(keys), self.parent)
            shortcut.setContext(qt.Qt.WidgetWithChildrenShortcut)
            shortcut.connect("activated()", self.run.onRunShortcut)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        slicer.app.connect("aboutToQuit()", self.logic.shutdown)

        self.initializeParameterNode()
        self.setupPanel.updateSetupStatus()
        self.logic.devices.start()
        self.setProcessingState()

    def _fillChoices(self) -> None:
        for combo, items in (
                (self.ui.modalityComboBox, (("ct", _("CT")), ("mri", _("MRI")), ("pet", _("PET")))),
                (self.ui.conflictPolicyComboBox, ((ConflictPolicy.AUTO.value, _("Replace unedited results, else keep both")),
                                                  (ConflictPolicy.REPLACE.value, _("Replace")),
                                                  (ConflictPolicy.KEEP_BOTH.value, _("Keep both")),
                                                  (ConflictPolicy.SKIP.value, _("Skip")))),
                (self.ui.namesComboBox, (("sat", _("SAT terms")), ("tg263", _("TG-263 (radiotherapy)"))))):
            for value, label in items:
                combo.addItem(label, value)

    def cleanup(self) -> None:
        self.removeObservers()
        if self.ui is not None:
            self._timer.stop()
            self.results.volumesTimer.stop()  # its table goes with the widget
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
        self.run.lastOutcome = None
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

    def _choiceCombos(self) -> tuple:
        node, ui = self._parameterNode, self.ui
        return ((ui.modalityComboBox, node.modality), (ui.modelComboBox, node.model), (ui.deviceComboBox, node.device),
                (ui.conflictPolicyComboBox, node.conflictPolicy), (ui.namesComboBox, node.names))

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        for combo, value in self._choiceCombos():
            wasBlocked = combo.blockSignals(True)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            combo.blockSignals(wasBlocked)
        self.prompts.showPrompts()
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
        node.names = self.ui.namesComboBox.currentData
        node.EndModify(wasModifying)

    def setProcessingState(self, *unused) -> None:
        """Every busy/idle state of the panel, from what the logic is doing now (one place for all of it)."""
        node, logic = self._parameterNode, self.logic
        running = logic.running
        typed = bool(self.ui.promptLineEdit.text.strip())
        onServer = self.compute.onServer
        ready = bool(node and node.inputVolume and (node.prompts or typed)) and (
            not onServer or bool(self.ui.serverUrlLineEdit.text.strip()))
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.enabled = running or ready
        self.ui.applyButton.toolTip = (_("Stop the running segmentation; the scene stays as it was.") if running
                                       else _("Segment the chosen structures (Ctrl+Enter)") if ready
                                       else _("Type the server's address (Compute on).") if onServer and node and node.inputVolume
                                       else _("Select an input volume and add at least one structure."))
        self.ui.deviceComboBox.enabled = not onServer  # the server runs on its own device
        self.setupPanel.updateState(running)
        self.compute.updateState(running)
        self.results.updateState(running)
        if logic.busy:
            self._timer.start()
        else:
            self._timer.stop()

    def onPoll(self) -> None:
        self.logic.poll()
        if not self.logic.busy:
            self._timer.stop()

    def appendLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)
        logging.debug("SATSegment: %s", line)

    # -- inputs ------------------------------------------------------------------------------------

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

    def run(self, parameterNode: SATSegmentParameterNode, server: Optional[ServerChoice] = None) -> str:
        """Start a run of what the parameter node says, on this computer or `server`; its outcome arrives through
        `onRunFinished`."""
        node = parameterNode
        return self.start(node.inputVolume, list(node.prompts), node.modality, server, model=node.model,
                          device=node.device, roiNode=node.roi, outputSegmentationNode=node.outputSegmentation,
                          policy=ConflictPolicy(node.conflictPolicy), allowFreeText=bool(node.freeTextPrompts),
                          names=node.names)


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
