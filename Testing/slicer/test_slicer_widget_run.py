"""The panel driven as a user drives it, under Qt with the real worker and a tiny model installed as SAT-Nano:
type and complete structures, add a preset, Apply, watch progress, Cancel, run again, undo, and work with
the segments table."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtTest

RUN_TIMEOUT = 240


def _prompts(panel) -> list[str]:
    return list(panel.widget._parameterNode.prompts)


def _choose_completion(panel, typed: str, rows_down: int = 1) -> None:
    """Type into the prompt box, go down the completion list and press Enter, as with the keyboard."""
    panel.type(panel.ui.promptLineEdit, typed)
    popup = panel.widget.prompts.completer.popup()
    assert popup.isVisible(), "no completion list"
    for _ in range(rows_down):
        QtTest.QTest.keyClick(popup, QtCore.Qt.Key_Down)
    QtTest.QTest.keyClick(popup, QtCore.Qt.Key_Return)
    panel.process(0.1)


def _wait_for_run(panel) -> None:
    panel.waitUntil(lambda: not panel.logic.running, RUN_TIMEOUT, "the end of the run")
    panel.process(0.2)


def _segment_names(node) -> list[str]:
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


@pytest.fixture
def ready(installed_nano, ct_block, panel):
    """The panel with SAT-Nano installed and a block of the sample CT loaded before the module was entered."""
    assert panel.ui.inputVolumeSelector.currentNode() is ct_block
    return panel


def test_complete_apply_progress_volumes_and_undo(ready):
    panel, ui = ready, ready.ui
    assert not ui.applyButton.enabled  # nothing to segment yet
    _choose_completion(panel, "liv")
    assert _prompts(panel) == ["liver"] and ui.promptLineEdit.text == ""
    panel.type(ui.promptLineEdit, "spleen")
    panel.key(ui.promptLineEdit, QtCore.Qt.Key_Return)
    assert _prompts(panel) == ["liver", "spleen"]
    assert [ui.promptListWidget.item(i).text() for i in range(ui.promptListWidget.count)] == ["liver", "spleen"]

    fractions = []
    ui.progressBar.valueChanged.connect(fractions.append)
    panel.click(ui.applyButton)
    assert ui.applyButton.text == "Cancel" and not ui.removeModelButton.enabled
    panel.screenshot("running")
    _wait_for_run(panel)
    assert ui.applyButton.text == "Apply"
    assert fractions == sorted(fractions) and fractions[-1] == 100
    output = ui.outputSegmentationSelector.currentNode()
    assert output is not None and _segment_names(output) == ["liver", "spleen"]
    assert "2 segments added" in ui.statusLabel.text
    assert ui.segmentsTableView.segmentNames() == ["liver", "spleen"]
    panel.process(0.5)  # the volumes table updates once edits pause
    rows = [(ui.volumesTableWidget.item(r, 0).text(), float(ui.volumesTableWidget.item(r, 1).text()))
            for r in range(ui.volumesTableWidget.rowCount)]
    assert [name for name, _ in rows] == ["liver", "spleen"] and all(ml >= 0 for _, ml in rows)
    panel.screenshot("results")
    panel.click(ui.openSegmentEditorButton)  # the editor opens on the first new segment
    editor = panel.env.editor
    assert editor.segmentation is output and editor.currentSegment == output.GetSegmentation().GetNthSegmentID(0)

    assert ui.undoButton.enabled
    panel.click(ui.undoButton)
    assert output.GetScene() is None  # the run created it, undo removes it
    assert ui.outputSegmentationSelector.currentNode() is None and not ui.undoButton.enabled
    assert "undone" in ui.statusLabel.text


def test_cancel_changes_nothing_and_a_second_run_works(ready):
    panel, ui = ready, ready.ui
    panel.type(ui.promptLineEdit, "liver")  # typed but not added: Apply adds it
    panel.click(ui.applyButton)
    assert _prompts(panel) == ["liver"] and panel.logic.running
    panel.click(ui.applyButton)  # Cancel
    _wait_for_run(panel)
    assert "Cancelled" in ui.statusLabel.text and ui.progressBar.value == 0
    assert panel.scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0
    QtTest.QTest.keyClick(ui.promptLineEdit, QtCore.Qt.Key_Return, QtCore.Qt.ControlModifier)  # Ctrl+Enter runs
    panel.process()
    assert panel.logic.running
    _wait_for_run(panel)
    assert _segment_names(ui.outputSegmentationSelector.currentNode()) == ["liver"]


def test_deleting_the_input_during_a_run_is_reported_and_the_panel_recovers(ready, ct_block):
    panel, ui = ready, ready.ui
    panel.type(ui.promptLineEdit, "liver")
    panel.click(ui.applyButton)
    panel.scene.RemoveNode(ct_block)
    panel.user.will("Ok")
    _wait_for_run(panel)
    assert "input volume was deleted" in panel.user.dialogs[-1].text
    assert ui.applyButton.text == "Apply" and ui.statusLabel.text == "Failed."
    assert panel.scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_deleting_the_output_during_a_run_puts_the_results_in_a_new_segmentation(ready, ct_block):
    panel, ui = ready, ready.ui
    chosen = panel.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "chosen")
    ui.outputSegmentationSelector.chooseItem("chosen")
    panel.type(ui.promptLineEdit, "liver")
    panel.click(ui.applyButton)
    panel.scene.RemoveNode(chosen)
    _wait_for_run(panel)
    output = ui.outputSegmentationSelector.currentNode()
    assert output is not None and output is not chosen and _segment_names(output) == ["liver"]
    assert "deleted during the run" in ui.statusLabel.text and "1 segments added" in ui.statusLabel.text
