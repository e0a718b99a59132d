"""The panel under Qt without running SAT: the prompt box (unknown structures, presets, removal, shortcuts),
the inputs (ROI, output, choices), the segments table, Show 3D, the Segment Editor button, refusals before a
run, run errors as the user sees them, and what happens when the scene closes."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtTest, QtWidgets

from SATSegmentSlicerLib.runner import RunOutcome


def _prompts(panel) -> list[str]:
    return list(panel.widget._parameterNode.prompts)


def _items(panel) -> list[str]:
    widget = panel.ui.promptListWidget
    return [widget.item(i).text() for i in range(widget.count)]


@pytest.fixture
def volume_panel(ct_block, panel):
    return panel


def test_unknown_structure_is_added_only_when_confirmed_and_marked(panel):
    ui = panel.ui
    panel.type(ui.promptLineEdit, "banana bread")
    panel.user.will("No")
    panel.key(ui.promptLineEdit, QtCore.Qt.Key_Return)
    assert _prompts(panel) == [] and "not in SAT's vocabulary" in ui.promptWarningLabel.text
    assert ui.promptLineEdit.text == "banana bread"  # kept, so it can be corrected
    panel.user.will("Yes")
    panel.click(ui.addPromptButton)
    assert _prompts(panel) == ["banana bread"] and _items(panel) == ["banana bread (not in SAT's vocabulary)"]
    assert panel.widget._parameterNode.freeTextPrompts == ["banana bread"]
    assert "Unknown structure" == panel.user.dialogs[0].title


def test_a_run_with_free_text_asks_first(volume_panel):
    panel, ui = volume_panel, volume_panel.ui
    panel.user.will("Yes")
    panel.type(ui.promptLineEdit, "banana bread")
    panel.key(ui.promptLineEdit, QtCore.Qt.Key_Return)
    panel.user.will("No")  # "not in SAT's vocabulary ... Run them anyway?"
    panel.click(ui.applyButton)
    assert "Run them anyway" in panel.user.dialogs[-1].text and not panel.logic.running


def test_panel_with_structures_fits_the_module_panel(volume_panel):
    panel, ui = volume_panel, volume_panel.ui
    panel.user.will("Yes")
    for text in ("liver", "left kidney", "L3", "banana bread"):
        panel.type(ui.promptLineEdit, text)
        panel.key(ui.promptLineEdit, QtCore.Qt.Key_Return)
    panel.type(ui.promptLineEdit, "sple")
    shots = panel.screenshot("structures")
    assert shots and shots[0].stat().st_size > 1000
    from qtharness.panel import PANEL_WIDTH

    assert panel.container.minimumSizeHint().width() <= PANEL_WIDTH  # fits the module panel of a 1366-px screen
    for widget in panel.container.findChildren(QtWidgets.QLabel) + panel.container.findChildren(QtWidgets.QPushButton):
        # PythonQt-flavoured widgets: Qt properties (width, wordWrap, objectName) are attributes
        if widget.isVisible() and not (isinstance(widget, QtWidgets.QLabel) and widget.wordWrap):
            assert widget.width >= widget.sizeHint().width(), f"{widget.objectName} is cut off"
    assert _prompts(panel) == ["liver", "left kidney", "lumbar vertebrae 3 (l3)", "banana bread"]  # SAT's own term


def test_presets_removal_clear_and_the_delete_key(panel):
    ui = panel.ui
    ui.presetComboBox.setFocus()
    panel.key(ui.presetComboBox, QtCore.Qt.Key_Down)  # choosing with the keyboard
    abdominal = panel.logic.vocabulary.presets()[ui.presetComboBox.itemText(1)]
    assert _prompts(panel) == abdominal and ui.presetComboBox.currentIndex == 0
    ui.promptListWidget.setCurrentRow(0)
    panel.click(ui.removePromptButton)
    assert _prompts(panel) == abdominal[1:]
    ui.promptListWidget.setFocus()
    ui.promptListWidget.setCurrentRow(0)
    panel.key(ui.promptListWidget, QtCore.Qt.Key_Delete)
    assert _prompts(panel) == abdominal[2:]
    panel.click(ui.clearPromptsButton)
    assert _prompts(panel) == [] and ui.promptListWidget.count == 0


def test_apply_needs_a_volume_and_a_structure(panel, slicer_env):
    ui = panel.ui
    assert not ui.applyButton.enabled and "Select an input volume" in ui.applyButton.toolTip
    panel.type(ui.promptLineEdit, "liver")
    assert not ui.applyButton.enabled  # still no volume
    volume = slicer_env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "later")
    panel.process()
    assert ui.inputVolumeSelector.currentNode() is volume and ui.applyButton.enabled  # typed text counts


def test_apply_without_the_model_offers_the_download(volume_panel):
    panel, ui = volume_panel, volume_panel.ui
    panel.type(ui.promptLineEdit, "liver")
    panel.user.will("No")
    panel.click(ui.applyButton)
    assert panel.user.dialogs[-1].text == "SAT-Nano is not installed. Download it now?"
    assert not panel.logic.running and _prompts(panel) == ["liver"]


def test_apply_without_the_packages_says_what_to_install(volume_panel, tmp_path):
    panel, ui = volume_panel, volume_panel.ui
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-package-xyz>=1\n")
    panel.logic.dependencies.requirementsFile = requirements
    panel.type(ui.promptLineEdit, "liver")
    panel.user.will("Ok")
    panel.click(ui.applyButton)
    assert "no-such-package-xyz" in panel.user.dialogs[-1].text and not panel.logic.running


def test_output_under_another_transform_is_refused_with_the_names(installed_nano, volume_panel, slicer_env):
    panel, ui = volume_panel, volume_panel.ui
    scene = slicer_env.scene
    output = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "moved")
    output.SetAndObserveTransformNodeID(scene.AddNewNodeByClass("vtkMRMLLinearTransformNode").GetID())
    ui.outputSegmentationSelector.chooseItem("moved")
    panel.type(ui.promptLineEdit, "liver")
    panel.user.will("Ok")
    panel.click(ui.applyButton)
    text = panel.user.dialogs[-1].text
    assert "'moved'" in text and "'CT block'" in text and "Create new segmentation on Apply" in text


def test_choices_are_stored_in_the_parameter_node(panel):
    ui, node = panel.ui, panel.widget._parameterNode
    for combo, value, field in ((ui.modalityComboBox, "mri", "modality"), (ui.deviceComboBox, "cpu", "device"),
                                (ui.conflictPolicyComboBox, "skip", "conflictPolicy")):
        combo.setCurrentIndex(combo.findData(value))
        panel.process()
        assert getattr(node, field) == value
    node.modality = "pet"  # and back: a loaded scene shows its choices
    assert ui.modalityComboBox.currentData == "pet"


def test_a_new_roi_covers_the_input_volume(volume_panel, ct_block):
    panel, ui = volume_panel, volume_panel.ui
    ui.roiSelector.chooseItem("Create new SAT ROI")
    roi = ui.roiSelector.currentNode()
    assert roi is not None and panel.widget._parameterNode.roi is roi
    bounds = [0.0] * 6
    ct_block.GetRASBounds(bounds)
    assert list(roi.GetCenter()) == pytest.approx([(bounds[2 * a] + bounds[2 * a + 1]) / 2 for a in range(3)])
    assert list(roi.GetSize()) == pytest.approx([bounds[2 * a + 1] - bounds[2 * a] for a in range(3)])


def test_input_volume_choice_sets_the_modality_hint(volume_panel, slicer_env):
    panel, ui = volume_panel, volume_panel.ui
    assert ui.modalityInfoLabel.text == "Choose the scan type."
    other = slicer_env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "other")
    ui.inputVolumeSelector.chooseItem("other")
    assert panel.widget._parameterNode.inputVolume is other


@pytest.fixture
def segmented(volume_panel, slicer_env, ct_block):
    """An existing segmentation with three segments, chosen as the output."""
    node = slicer_env.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(ct_block)
    for name in ("liver", "spleen", "aorta"):
        node.GetSegmentation().AddEmptySegment("", name)
    volume_panel.ui.outputSegmentationSelector.chooseItem("mine")
    return volume_panel, node


def test_segments_table_lists_and_removes_segments(segmented):
    panel, node = segmented
    ui = panel.ui
    assert ui.segmentsTableView.segmentNames() == ["liver", "spleen", "aorta"]
    assert ui.removeAllSegmentsButton.enabled
    ui.segmentsTableView.setSelectedSegmentIDs([node.GetSegmentation().GetSegmentIdBySegmentName("spleen")])
    panel.click(ui.removeSegmentsButton)
    assert ui.segmentsTableView.segmentNames() == ["liver", "aorta"]
    panel.process(0.5)  # the volumes table follows once edits pause
    assert ui.volumesTableWidget.rowCount == 2
    panel.user.will("No")
    panel.click(ui.removeAllSegmentsButton)
    assert node.GetSegmentation().GetNumberOfSegments() == 2
    panel.user.will("Yes")
    panel.click(ui.removeAllSegmentsButton)
    assert "Delete all 2 segments of 'mine'?" == panel.user.dialogs[-1].text
    assert node.GetSegmentation().GetNumberOfSegments() == 0 and not ui.removeAllSegmentsButton.enabled


def test_show_3d_and_the_segment_editor_button(segmented, slicer_env, ct_block):
    panel, node = segmented
    ui = panel.ui
    surface = "Closed surface"
    panel.click(ui.show3DButton)
    assert node.GetSegmentation().ContainsRepresentation(surface) and ui.show3DButton.checked
    panel.click(ui.show3DButton)
    assert not node.GetSegmentation().ContainsRepresentation(surface)
    assert ui.show3DButton.className() == "qMRMLSegmentationShow3DButton"  # the standard toggle, no layout change
    panel.click(ui.openSegmentEditorButton)
    assert slicer_env.mainWindow.moduleSelector().selected == ["SegmentEditor"]
    assert slicer_env.editor.segmentation is node and slicer_env.editor.source is ct_block


def test_run_errors_as_the_user_sees_them(volume_panel):
    panel = volume_panel
    panel.user.will("Ok")
    panel.logic.onRunFinished(RunOutcome("error", error={"code": "out_of_memory", "message": "Out of memory.",
                                                         "hint": "details"}, warnings=[{"message": "slow CPU"}]))
    dialog = panel.user.dialogs[-1]
    assert "draw an ROI" in dialog.text and dialog.detailedText == "details"
    assert panel.ui.statusLabel.text == "Failed." and "Warning: slow CPU" in panel.ui.logTextEdit.toPlainText()
    panel.user.will("Ok")
    panel.logic.onRunFinished(RunOutcome("error", error={"code": "internal_error", "message": "English only",
                                                         "detail": "no labelmap"}))
    assert panel.user.dialogs[-1].text == "The results could not be added to the scene: no labelmap"
    panel.user.will("No")  # the model is missing: offer the download instead of an error
    panel.logic.onRunFinished(RunOutcome("error", error={"code": "model_error", "message": "No model."}))
    assert "Download the model now?" in panel.user.dialogs[-1].text


def test_closing_the_scene_stops_the_worker_and_starts_over(volume_panel, slicer_env):
    panel = volume_panel
    stopped = []
    panel.logic.stopWorker = lambda: stopped.append(True)
    panel.widget._parameterNode.prompts = ["liver"]
    slicer_env.scene.Clear(0)
    panel.process()
    assert stopped == [True]
    assert panel.widget._parameterNode is not None and panel.widget._parameterNode.prompts == []
    panel.widget.exit()
    assert panel.widget._parameterNode is None


def test_quitting_slicer_stops_the_child_processes(volume_panel, slicer_env):
    calls = []
    volume_panel.logic.models.cancelDownload = lambda: calls.append("download")
    slicer_env.app.aboutToQuit.emit()
    assert calls == ["download"]
