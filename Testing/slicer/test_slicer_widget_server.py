"""The new controls of the panel under Qt: segment names (SAT terms / TG-263), Paste list..., Export to
DICOM..., and Compute on: server, driven as a user against the real SATSegment server with the tiny model
on 127.0.0.1 (Test connection, a run whose result is imported with TG-263 names, Cancel, errors)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from PySide6 import QtCore

from SATSegmentSlicerLib import dicomlinks, segments
from SATSegmentSlicerLib.runner import RunOutcome

RUN_TIMEOUT = 240
INSTANCE_UIDS = "1.2.826.0.1.3680043.8.498.11 1.2.826.0.1.3680043.8.498.12"


def _prompts(panel) -> list[str]:
    return list(panel.widget._parameterNode.prompts)


def _names(node) -> list[str]:
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def _choose(combo, value) -> None:
    combo.setCurrentIndex(combo.findData(value))


def _fromDicom(scene, volume) -> int:
    """Place `volume` in a patient and study as Slicer's DICOM loader does; returns the study item."""
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Anonymous"), "CT study")
    hierarchy.SetItemParent(hierarchy.GetItemByDataNode(volume) or hierarchy.CreateItem(study, volume), study)
    volume.SetAttribute("DICOM.instanceUIDs", INSTANCE_UIDS)
    return study


@pytest.fixture
def on_server(ct_block, panel, label_server):
    """The panel computing on the test server (typed as a user types it)."""
    ui = panel.ui
    _choose(ui.computeOnComboBox, "server")
    panel.type(ui.serverUrlLineEdit, label_server.url)
    ui.serverUrlLineEdit.editingFinished.emit()
    return panel


def _wait_for_run(panel) -> None:
    panel.waitUntil(lambda: not panel.logic.running, RUN_TIMEOUT, "the end of the run")
    panel.process(0.2)


# -- structure lists ---------------------------------------------------------------------------------

def test_paste_list_adds_what_sat_knows_and_lists_the_rest_with_suggestions(panel, monkeypatch):
    import qt

    pasted = "Parotid_L; SpinalCord\nlefft lung upper\nBrainstem, banana bread"
    monkeypatch.setattr(qt.QInputDialog, "getMultiLineText", lambda *args: pasted)
    panel.user.will("Ok")
    panel.click(panel.ui.pasteListButton)
    assert _prompts(panel) == ["left parotid gland", "spinal cord", "brainstem"]
    assert panel.widget._parameterNode.freeTextPrompts == []  # unknown entries are never added
    dialog = panel.user.dialogs[-1]
    assert dialog.title == "Structures not added" and "3 structures were added" in dialog.text
    assert "lefft lung upper (did you mean: left lung upper lobe" in dialog.text and "banana bread" in dialog.text
    assert "lefft lung upper" in panel.ui.promptWarningLabel.text


def test_paste_list_of_a_planning_csv_and_a_cancelled_paste(panel, monkeypatch):
    import qt

    monkeypatch.setattr(qt.QInputDialog, "getMultiLineText", lambda *args: "ROI Name,Type\nParotid_R,ORGAN\nBladder,ORGAN\n")
    panel.click(panel.ui.pasteListButton)  # everything known: no dialog
    assert _prompts(panel) == ["right parotid gland", "urinary bladder"] and panel.ui.promptWarningLabel.text == ""
    monkeypatch.setattr(qt.QInputDialog, "getMultiLineText", lambda *args: "")  # Cancel
    panel.click(panel.ui.pasteListButton)
    assert _prompts(panel) == ["right parotid gland", "urinary bladder"]


def test_the_naming_choice_is_kept_in_the_parameter_node(panel):
    node, combo = panel.widget._parameterNode, panel.ui.namesComboBox
    assert node.names == "sat" and combo.currentData == "sat"
    _choose(combo, "tg263")
    assert node.names == "tg263"
    node.names = "sat"
    assert combo.currentData == "sat"


# -- DICOM export -------------------------------------------------------------------------------------

def test_export_to_dicom_is_offered_only_for_a_dicom_study(ct_block, panel, slicer_env):
    ui = panel.ui
    output = segments.createOutputSegmentation(ct_block)
    ui.outputSegmentationSelector.setCurrentNode(output)
    panel.process()
    assert not ui.exportDicomButton.enabled and "has segments" in ui.exportDicomButton.toolTip
    output.GetSegmentation().AddEmptySegment("", "liver")
    panel.process()
    assert not ui.exportDicomButton.enabled and "loaded from DICOM" in ui.exportDicomButton.toolTip
    study = _fromDicom(slicer_env.scene, ct_block)
    panel.widget.setProcessingState()
    assert not ui.exportDicomButton.enabled and "Apply on that volume links it" in ui.exportDicomButton.toolTip
    assert dicomlinks.linkToSource(output, ct_block)
    panel.widget.setProcessingState()
    assert ui.exportDicomButton.enabled and "QuantitativeReporting" in ui.exportDicomButton.toolTip
    panel.click(ui.exportDicomButton)
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer_env.scene)
    item = hierarchy.GetItemByDataNode(output)
    assert slicer_env.exportDialogs == [item] and hierarchy.GetItemParent(item) == study


# -- compute on a server ------------------------------------------------------------------------------

def test_compute_on_controls_say_where_data_goes_and_keep_the_token_out_of_settings(panel):
    import qt

    ui = panel.ui
    assert ui.computeOnComboBox.currentData == "local" and not ui.serverUrlLineEdit.enabled
    assert "only for the server you typed" in ui.serverPrivacyLabel.text
    assert ui.serverTokenLineEdit.echoMode == qt.QLineEdit.Password
    assert not ui.setupCollapsibleButton.collapsed  # SAT-Nano is not installed here
    _choose(ui.computeOnComboBox, "server")
    assert not ui.computeCollapsibleButton.collapsed and ui.serverUrlLineEdit.enabled
    assert ui.setupCollapsibleButton.collapsed  # not needed to run on a server
    assert not ui.testConnectionButton.enabled  # no address yet
    assert not ui.deviceComboBox.enabled and ui.modelComboBox.enabled  # the server's device; a model it serves
    panel.type(ui.serverUrlLineEdit, "http://gpu-server:8000")
    panel.type(ui.serverTokenLineEdit, "secret-token")
    ui.serverUrlLineEdit.editingFinished.emit()
    assert ui.testConnectionButton.enabled
    settings = qt.QSettings()
    assert settings.value("SATSegment/ComputeOn") == "server"
    assert settings.value("SATSegment/ServerURL") == "http://gpu-server:8000"
    assert "secret-token" not in Path(settings.fileName()).read_text(encoding="utf-8")
    _choose(ui.computeOnComboBox, "local")
    assert not ui.setupCollapsibleButton.collapsed and settings.value("SATSegment/ComputeOn") == "local"
    scripted = panel.widget._parameterNode.parameterNode  # what the scene saves
    assert all("secret-token" not in scripted.GetParameter(name) for name in scripted.GetParameterNames())


def test_test_connection_shows_the_version_and_models(on_server):
    from SATSegmentLib import __version__

    panel = on_server
    panel.click(panel.ui.testConnectionButton)
    text = panel.ui.serverInfoLabel.text
    assert f"SATSegment {__version__}" in text and "models: tiny" in text


def test_test_connection_to_no_server_explains_it(panel):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ui = panel.ui
    _choose(ui.computeOnComboBox, "server")
    panel.type(ui.serverUrlLineEdit, f"http://127.0.0.1:{port}")
    panel.user.will("Ok")
    panel.click(ui.testConnectionButton)
    assert "Cannot reach" in panel.user.dialogs[-1].text and "Not usable" in ui.serverInfoLabel.text


def test_a_run_on_the_server_imports_tg263_names_into_the_volumes_study(on_server, ct_block, slicer_env):
    panel, ui = on_server, on_server.ui
    study = _fromDicom(slicer_env.scene, ct_block)
    _choose(ui.namesComboBox, "tg263")
    for text in ("spinal cord", "left parotid gland"):
        panel.type(ui.promptLineEdit, text)
        panel.key(ui.promptLineEdit, QtCore.Qt.Key_Return)
    panel.click(ui.applyButton)
    assert ui.applyButton.text == "Cancel" and ui.statusLabel.text.startswith("Contacting http://127.0.0.1")
    assert not ui.computeOnComboBox.enabled
    panel.screenshot("server-running")
    _wait_for_run(panel)
    output = ui.outputSegmentationSelector.currentNode()
    assert output is not None and _names(output) == ["SpinalCord", "Parotid_L"], ui.statusLabel.text
    assert "2 segments added" in ui.statusLabel.text
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer_env.scene)
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(output)) == study
    assert ui.exportDicomButton.enabled and ui.undoButton.enabled
    panel.screenshot("server-results")
    panel.click(ui.undoButton)
    assert output.GetScene() is None


def test_cancel_on_the_server_leaves_the_scene_as_it_was(on_server):
    panel, ui = on_server, on_server.ui
    panel.type(ui.promptLineEdit, "liver")
    panel.click(ui.applyButton)
    panel.click(ui.applyButton)  # Cancel
    _wait_for_run(panel)
    assert "Cancelled" in ui.statusLabel.text and ui.applyButton.text == "Apply"
    assert panel.scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


@pytest.mark.parametrize("stop", ["Cancel", "closing the module"])
def test_cancel_and_closing_the_module_never_wait_for_a_server_that_does_not_answer(stop, ct_block, panel, silent_server):
    from SATSegmentSlicerLib import remoterunner

    ui = panel.ui
    _choose(ui.computeOnComboBox, "server")
    panel.type(ui.serverUrlLineEdit, silent_server)
    ui.serverUrlLineEdit.editingFinished.emit()
    panel.type(ui.promptLineEdit, "liver")
    panel.click(ui.applyButton)
    panel.process(0.3)  # the run waits for the server's answer
    started = time.monotonic()
    if stop == "Cancel":
        panel.click(ui.applyButton)
    else:
        panel.widget.exit()
        panel.widget.cleanup()
    assert time.monotonic() - started < 0.5  # Slicer's GUI thread was not held
    panel.waitUntil(lambda: not panel.logic.running, remoterunner.CANCEL_GRACE_S + 1, "the end of the run")
    assert panel.scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0
    if stop == "Cancel":
        panel.process(0.1)
        assert "Cancelled" in ui.statusLabel.text and ui.applyButton.text == "Apply"


def test_server_progress_and_an_unknown_prompt_as_the_user_sees_them(on_server):
    panel, ui = on_server, on_server.ui
    ui.progressBar.setValue(0)
    panel.logic.onRunProgress({"event": "progress", "stage": "server", "state": "queued", "position": 2, "fraction": None})
    assert ui.statusLabel.text == "Server: waiting, 2 jobs ahead." and ui.progressBar.value == 0
    panel.logic.onRunProgress({"event": "progress", "stage": "server", "state": "running", "position": 0, "fraction": 0.4})
    assert ui.statusLabel.text == "Server: running." and ui.progressBar.value == 40  # the server's progress
    for state, status, logged in (
            ("reading from the PACS", "Server: reading the series from its PACS (nothing uploaded).", "reads the series"),
            ("uploading", "Server: uploading the volume.", "could not read the series")):
        panel.logic.onRunProgress({"event": "progress", "stage": "server", "state": state, "position": 0,
                                   "message": f"the server {logged}"})
        assert ui.statusLabel.text == status
        assert ui.logTextEdit.toPlainText().splitlines()[-1] == f"Server: the server {logged}"
    panel.user.will("Ok")
    panel.logic.onRunFinished(RunOutcome("error", error={
        "code": "unknown_prompt", "message": "'lefft lung upper' is not in SAT's vocabulary for CT.",
        "hint": "Check the spelling.", "suggestions": ["left lung upper lobe", "left lung"]}))
    dialog = panel.user.dialogs[-1]
    assert "Did you mean: left lung upper lobe, left lung?" in dialog.text and dialog.detailedText == "Check the spelling."
    panel.user.will("Ok")  # a missing local model is no reason to offer a download when the server runs SAT
    panel.logic.onRunFinished(RunOutcome("error", error={"code": "model_error", "message": "The server has no model."}))
    assert panel.user.dialogs[-1].text == "The server has no model."


def test_an_address_that_is_no_url_is_refused_before_anything_is_sent(ct_block, panel):
    ui = panel.ui
    _choose(ui.computeOnComboBox, "server")
    panel.type(ui.serverUrlLineEdit, "gpu-server")
    panel.type(ui.promptLineEdit, "liver")
    panel.user.will("Ok")
    panel.click(ui.applyButton)
    assert "'gpu-server' is not a server address" in panel.user.dialogs[-1].text and not panel.logic.running


def test_test_connection_explains_a_version_mismatch(on_server, monkeypatch):
    import SATSegmentLib

    monkeypatch.setattr(SATSegmentLib, "__version__", "0.0.1")  # this module, older than the server
    panel = on_server
    panel.user.will("Ok")
    panel.click(panel.ui.testConnectionButton)
    dialog = panel.user.dialogs[-1]
    assert "this module 0.0.1" in dialog.text and "same version (major.minor)" in dialog.detailedText
    assert panel.ui.serverInfoLabel.text.startswith("Not usable: The server runs SATSegment")
