"""The Setup section under Qt: packages, the one model selector, downloads against a local hub, import,
removal, the GPU line, and what an older Slicer sees."""

from __future__ import annotations

import sys
import zipfile

import pytest

GPU = '{"event": "devices", "cuda": true, "gpus": [{"name": "RTX 4090", "memory_gb": 24.0}], "torch": "2"}'


def test_setup_stays_open_while_the_model_is_missing(panel):
    panel.screenshot("setup-model-missing")
    assert not panel.ui.setupCollapsibleButton.collapsed
    assert "SAT-Nano is not installed" in panel.ui.modelStatusLabel.text
    assert panel.ui.downloadModelButton.enabled and not panel.ui.removeModelButton.enabled


def test_setup_folds_away_once_packages_and_model_are_installed(installed_nano, panel):
    panel.screenshot("ready")
    assert panel.ui.setupCollapsibleButton.collapsed
    assert "SAT-Nano is installed" in panel.ui.modelStatusLabel.text
    assert not panel.ui.downloadModelButton.enabled and panel.ui.removeModelButton.enabled


def test_download_import_and_remove_act_on_the_model_chosen_for_the_run(installed_nano, panel):
    panel.ui.modelComboBox.setCurrentIndex(panel.ui.modelComboBox.findData("pro"))
    panel.process()
    assert panel.widget._parameterNode.model == "pro"
    assert "SAT-Pro is not installed" in panel.ui.modelStatusLabel.text
    assert not panel.ui.setupCollapsibleButton.collapsed
    assert "SAT-Pro needs about" in panel.ui.deviceInfoLabel.text


def test_download_shows_the_file_and_installs_the_model(panel, hub):
    panel.logic.models.env = panel.logic.models.env | {"SATSEGMENT_MODEL_URL_BASE": hub.url}
    formats = []
    panel.ui.downloadProgressBar.valueChanged.connect(lambda value: formats.append(panel.ui.downloadProgressBar.format))
    panel.user.will("Ok")  # the licence note
    panel.click(panel.ui.downloadModelButton)
    assert panel.ui.downloadProgressBar.visible and panel.ui.cancelDownloadButton.enabled
    panel.screenshot("download-in-progress")
    panel.waitUntil(lambda: not panel.logic.models.downloading, 120, "the end of the download")
    assert "licence" in panel.user.dialogs[0].title.lower()
    assert formats and any(".pth" in text and "%p%" in text for text in formats), formats
    assert not any(text.startswith("download") for text in formats)
    assert "SAT-Nano is installed" in panel.ui.modelStatusLabel.text
    assert not panel.ui.downloadProgressBar.visible and panel.ui.setupCollapsibleButton.collapsed


def test_cancel_download_ends_quietly(panel, hub):
    panel.logic.models.env = panel.logic.models.env | {"SATSEGMENT_MODEL_URL_BASE": hub.url + "/slow"}
    panel.user.will("Ok")
    panel.click(panel.ui.downloadModelButton)
    panel.click(panel.ui.cancelDownloadButton)
    panel.waitUntil(lambda: not panel.logic.models.downloading, 30, "the end of the download")
    assert len(panel.user.dialogs) == 1  # the licence; no error dialog
    assert "Download cancelled" in panel.ui.logTextEdit.toPlainText()
    assert panel.ui.downloadModelButton.enabled and not panel.ui.cancelDownloadButton.enabled


def test_a_download_process_that_dies_is_reported_with_its_exit_code(panel):
    panel.logic.models.pythonCommand = [sys.executable, "-c", "import sys; sys.exit(3)"]
    panel.user.will("Ok", "Ok")
    panel.click(panel.ui.downloadModelButton)
    panel.waitUntil(lambda: not panel.logic.models.downloading, 30, "the end of the download")
    assert panel.user.dialogs[1].text == "The download stopped (exit code 3)."


def test_failed_download_is_reported(panel):
    panel.logic.models.env = panel.logic.models.env | {"SATSEGMENT_MODEL_URL_BASE": "http://127.0.0.1:9/nothing"}
    panel.user.will("Ok", "Ok")
    panel.click(panel.ui.downloadModelButton)
    panel.waitUntil(lambda: not panel.logic.models.downloading, 60, "the end of the download")
    assert len(panel.user.dialogs) == 2 and panel.user.dialogs[1].text


def test_declining_the_licence_downloads_nothing(panel):
    panel.user.will("Cancel")
    panel.click(panel.ui.downloadModelButton)
    assert not panel.logic.models.downloading and not panel.ui.downloadProgressBar.visible


def test_import_folder_installs_the_chosen_model(panel, official_nano_files, monkeypatch):
    import qt

    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", lambda *args: str(official_nano_files))
    panel.click(panel.ui.importModelFolderButton)
    assert "SAT-Nano is installed" in panel.ui.modelStatusLabel.text


def test_import_of_a_bad_zip_shows_the_error(panel, tmp_path, monkeypatch):
    import qt

    broken = tmp_path / "weights.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("readme.txt", "no weights here")
    monkeypatch.setattr(qt.QFileDialog, "getOpenFileName", lambda *args: str(broken))
    panel.user.will("Ok")
    panel.click(panel.ui.importModelZipButton)
    assert panel.user.dialogs[0].text.startswith("Importing the model failed.")
    assert panel.exceptions and panel.exceptions.pop()  # tryWithErrorDisplay re-raises, as in Slicer
    assert "not installed" in panel.ui.modelStatusLabel.text


def test_remove_model_deletes_it_after_confirmation(installed_nano, panel):
    panel.toggleSection(panel.ui.setupCollapsibleButton)
    assert not panel.ui.setupCollapsibleButton.collapsed
    panel.user.will("Yes")
    panel.click(panel.ui.removeModelButton)
    assert not installed_nano.exists()
    assert "SAT-Pro" not in panel.user.dialogs[0].text and "SAT-Nano" in panel.user.dialogs[0].text
    assert "not installed" in panel.ui.modelStatusLabel.text and not panel.ui.setupCollapsibleButton.collapsed


def test_open_models_folder_shows_the_cache(panel, isolated_model_home, monkeypatch):
    import qt

    opened = []
    monkeypatch.setattr(qt.QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    panel.click(panel.ui.openModelsFolderButton)
    assert opened == [str(isolated_model_home / "models")]


@pytest.fixture
def missing_package(panel, tmp_path):
    """A requirements file naming a package that is not installed, and pip replaced by a recorder."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-package-xyz>=1\n")
    installed = []
    installer = panel.logic.dependencies
    installer.requirementsFile, installer.pipInstall = requirements, installed.append
    panel.widget.setupPanel.updateSetupStatus()
    return installed


def test_install_asks_once_then_installs_with_pip_under_a_wait_cursor(panel, missing_package):
    assert panel.ui.installDependenciesButton.enabled and "no-such-package-xyz" in panel.ui.dependencyStatusLabel.text
    panel.logic.devices.command = [sys.executable, "-c", f"print({GPU!r})"]
    panel.user.will("Ok")
    panel.click(panel.ui.installDependenciesButton)
    assert missing_package == [["no-such-package-xyz>=1"]]
    dialog, = panel.user.dialogs
    assert "no-such-package-xyz" in dialog.text and not dialog.overrideCursor
    panel.waitUntil(lambda: not panel.logic.devices.busy, 30, "the new device answer")
    assert "RTX 4090 (24.0 GB)" in panel.ui.deviceInfoLabel.text  # the GPU line is asked again


def test_install_cancelled_installs_nothing(panel, missing_package):
    panel.user.will("Cancel")
    panel.click(panel.ui.installDependenciesButton)
    assert missing_package == []


def test_pytorch_needing_a_restart_offers_to_restart(panel, missing_package, monkeypatch, slicer_env):
    from SATSegmentSlicerLib import dependencies

    monkeypatch.setattr(dependencies, "torchMissing", lambda: True)
    panel.logic.dependencies.installTorch = lambda: None  # PyTorchUtils: installed, restart needed
    panel.user.will("Ok", "Yes")
    panel.click(panel.ui.installDependenciesButton)
    assert "restart" in panel.user.dialogs[1].text.lower()
    assert slicer_env.app.restartRequests == 1


def test_missing_pytorch_extension_is_explained(panel, missing_package, monkeypatch):
    from SATSegmentSlicerLib import dependencies

    def noExtension():
        raise ImportError("No module named 'PyTorchUtils'")

    monkeypatch.setattr(dependencies, "torchMissing", lambda: True)
    panel.logic.dependencies.installTorch = noExtension
    panel.user.will("Ok", "Ok")
    panel.click(panel.ui.installDependenciesButton)
    assert "PyTorch extension" in panel.user.dialogs[1].text and missing_package == []


def test_a_gpu_too_small_for_the_model_is_explained(panel):
    small = '{"event": "devices", "cuda": true, "gpus": [{"name": "Quadro P1000", "memory_gb": 1.0}], "torch": "2"}'
    panel.logic.devices.command = [sys.executable, "-c", f"print({small!r})"]
    panel.logic.devices.start()
    panel.widget.setProcessingState()
    panel.waitUntil(lambda: not panel.logic.devices.busy, 30, "the device probe")
    text = panel.ui.deviceInfoLabel.text
    assert text.startswith("Quadro P1000 (1.0 GB)") and "Quadro P1000 has 1 GB: with Automatic, SAT runs on the CPU" in text


def test_the_real_device_probe_answers(panel):
    from SATSegmentSlicerLib import paths

    panel.logic.devices.command = [paths.pythonExecutable(), "-m", "SATSegmentSlicerLib.devices"]
    panel.logic.devices.start()
    panel.widget.setProcessingState()
    panel.waitUntil(lambda: not panel.logic.devices.busy, 60, "the device probe")
    assert "No CUDA GPU found" in panel.ui.deviceInfoLabel.text  # this machine has none


def test_a_device_probe_that_cannot_start_is_reported(panel):
    panel.logic.devices.command = ["/no/such/python", "-m", "SATSegmentSlicerLib.devices"]
    panel.logic.devices.start()
    assert "could not be checked" in panel.ui.deviceInfoLabel.text


def test_an_older_slicer_gets_a_clear_message(slicer_env, satsegment, logic, user, slot_errors, tmp_path, monkeypatch):
    from qtharness.panel import openPanel, screenshotDirs
    from SATSegmentSlicerLib import versions

    monkeypatch.setattr(versions, "runningPython", lambda: (3, 9, 10))
    opened = openPanel(slicer_env, satsegment, user, screenshotDirs(tmp_path), slot_errors, logic=logic)
    labels = [child.text for child in opened.container.findChildren(satsegment.qt.QLabel)]
    assert any("needs Slicer 5.10 or later" in text and "3.9.10" in text for text in labels), labels
    assert opened.widget.ui is None
    opened.close()
