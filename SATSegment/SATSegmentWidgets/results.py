"""The Results section: the output's segments and volumes, removal, undo, the Segment Editor, DICOM export."""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _

from SATSegmentSlicerLib import dicomlinks

from .part import PanelPart

VOLUMES_DELAY_MS = 300  # volumes are recomputed once edits pause


class ResultsPanel(PanelPart):
    """What the user does with the output segmentation after a run."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.observedSegmentation = None

    def connect(self) -> None:
        ui = self.ui
        ui.outputSegmentationSelector.currentNodeChanged.connect(self.onOutputChanged)
        ui.openSegmentEditorButton.clicked.connect(self.onOpenSegmentEditor)
        ui.removeSegmentsButton.clicked.connect(self.onRemoveSelectedSegments)
        ui.removeAllSegmentsButton.clicked.connect(self.onRemoveAllSegments)
        ui.undoButton.clicked.connect(self.onUndoLastResult)
        ui.exportDicomButton.clicked.connect(self.onExportDicom)
        self.volumesTimer = qt.QTimer()
        self.volumesTimer.setSingleShot(True)
        self.volumesTimer.setInterval(VOLUMES_DELAY_MS)
        self.volumesTimer.timeout.connect(self.updateVolumes)

    def updateState(self, running: bool) -> None:
        """The results buttons for the output and the run (part of `setProcessingState`)."""
        ui, node = self.ui, self.node
        output = node.outputSegmentation if node else None
        hasSegments = bool(output and output.GetSegmentation().GetNumberOfSegments())
        ui.openSegmentEditorButton.enabled = output is not None
        ui.removeSegmentsButton.enabled = ui.removeAllSegmentsButton.enabled = hasSegments and not running
        lastOutcome = self.widget.run.lastOutcome
        ui.undoButton.enabled = not running and lastOutcome is not None and lastOutcome.canUndo
        blocker = dicomlinks.whyNotExportable(output)
        ui.exportDicomButton.enabled = not blocker and not running
        ui.exportDicomButton.toolTip = self.exportToolTip(blocker)

    @staticmethod
    def exportToolTip(blocker: str) -> str:
        """What Export to DICOM does, or why it is unavailable (a `dicomlinks.whyNotExportable` code)."""
        if blocker == "no_segments":
            return _("Available once the output segmentation has segments.")
        if blocker == "not_linked":
            return _("The output segmentation is not linked to its volume's DICOM study yet: Apply on that volume links it.")
        if blocker == "not_dicom":
            return _("Available for results on a volume loaded from DICOM (Slicer's DICOM module): the export needs its "
                     "DICOM study.")
        return _("Open Slicer's DICOM export for the output segmentation: DICOM SEG needs the QuantitativeReporting "
                 "extension, RTSTRUCT the SlicerRT extension.")

    def onOutputChanged(self, node) -> None:
        if self.observedSegmentation is not None:
            self.widget.removeObservers(self.onSegmentationChanged)
        self.observedSegmentation = node.GetSegmentation() if node else None
        if node is not None:
            for event in (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                          slicer.vtkSegmentation.SegmentModified):
                self.widget.addObserver(self.observedSegmentation, event, self.onSegmentationChanged)
        self.ui.segmentsTableView.setSegmentationNode(node)
        self.ui.show3DButton.setSegmentationNode(node)
        self.updateVolumes()
        self.widget.setProcessingState()

    def onSegmentationChanged(self, caller, event) -> None:
        self.volumesTimer.start()  # once edits pause
        self.widget.setProcessingState()

    def updateVolumes(self) -> None:
        node = self.node.outputSegmentation if self.node else None
        volumes = self.logic.segmentVolumes(node) if node else {}
        table = self.ui.volumesTableWidget
        table.setRowCount(len(volumes))
        for row, (name, ml) in enumerate(volumes.items()):
            table.setItem(row, 0, qt.QTableWidgetItem(name))
            table.setItem(row, 1, qt.QTableWidgetItem(f"{ml:.1f}"))

    def onRemoveSelectedSegments(self) -> None:
        segmentation = self.node.outputSegmentation.GetSegmentation()
        for segmentId in self.ui.segmentsTableView.selectedSegmentIDs():
            segmentation.RemoveSegment(segmentId)

    def onRemoveAllSegments(self) -> None:
        node = self.node.outputSegmentation
        if slicer.util.confirmYesNoDisplay(_("Delete all {count} segments of '{name}'?").format(
                count=node.GetSegmentation().GetNumberOfSegments(), name=node.GetName())):
            node.GetSegmentation().RemoveAllSegments()

    def onUndoLastResult(self) -> None:
        run = self.widget.run
        outcome, run.lastOutcome = run.lastOutcome, None
        outcome.undo()
        self.ui.statusLabel.text = _("The last result was undone.")
        self.widget.setProcessingState()

    def onOpenSegmentEditor(self) -> None:
        node = self.node.outputSegmentation
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(node)
        editor.setSourceVolumeNode(self.node.inputVolume)
        outcome = self.widget.run.lastOutcome
        if outcome is not None and outcome.segmentationNode is node and outcome.report.added:
            editor.setCurrentSegmentID(outcome.report.added[0])

    def onExportDicom(self) -> None:
        """Slicer's own DICOM export dialog, on the output segmentation's subject hierarchy item."""
        dialog = slicer.qSlicerDICOMExportDialog()
        dialog.setMRMLScene(slicer.mrmlScene)
        dialog.execDialog(dicomlinks.exportItem(self.node.outputSegmentation))
