"""SATSegment's panel as Slicer shows it: the module file loaded as Slicer loads it, the widget set up in the
module panel of a main window, dialogs answered by a scripted user, and screenshots.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtGui, QtTest, QtWidgets

from . import ctkwidgets, mrmlwidgets, pythonqt, slicerapp

REPO = Path(__file__).resolve().parents[3]
MODULE_FILE = REPO / "SATSegment" / "SATSegment.py"
PANEL_WIDTH = 440  # Slicer's module panel on a 1366-pixel-wide screen (about a third of it)
SCREEN_HEIGHT = 768


@dataclass
class Dialog:
    """A message box the module showed, and the button the scripted user pressed."""

    title: str
    text: str
    detailedText: str
    answer: str
    overrideCursor: bool


class ScriptedUser:
    """Answers the module's message boxes in the order the test said; a dialog nobody expected fails."""

    def __init__(self) -> None:
        self.answers: deque[str] = deque()
        self.dialogs: list[Dialog] = []

    def will(self, *answers: str) -> None:
        """Queue answers, by button name: 'Ok', 'Cancel', 'Yes', 'No'."""
        self.answers.extend(answers)

    def __call__(self, box: QtWidgets.QMessageBox) -> int:
        if not self.answers:
            raise AssertionError(f"unexpected dialog {box.windowTitle!r}: {box.text!r}")
        answer = self.answers.popleft()
        button = getattr(QtWidgets.QMessageBox, answer)
        self.dialogs.append(Dialog(box.windowTitle, box.text, box.detailedText, answer,  # PythonQt properties
                                   QtWidgets.QApplication.overrideCursor() is not None))
        return int(button.value) if hasattr(button, "value") else int(button)


class Panel:
    """The loaded module, its widget and what surrounds it; helpers act as a user would."""

    def __init__(self, env, module, widget, container, user: ScriptedUser, screenshotDirs: list[Path],
                 exceptions: list) -> None:
        self.env, self.module, self.widget, self.container = env, module, widget, container
        self.user, self.screenshotDirs, self.exceptions = user, screenshotDirs, exceptions

    @property
    def ui(self):
        return self.widget.ui

    @property
    def logic(self):
        return self.widget.logic

    @property
    def scene(self):
        return self.env.scene

    def process(self, seconds: float = 0.0) -> None:
        """Let Qt deliver events (and timers) for `seconds`."""
        end = time.monotonic() + seconds
        QtWidgets.QApplication.processEvents()
        while time.monotonic() < end:
            QtWidgets.QApplication.processEvents(QtCore.QEventLoop.AllEvents, 50)
            time.sleep(0.01)

    def waitUntil(self, condition, timeout: float = 60.0, what: str = "the condition") -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError(f"{what} did not happen within {timeout} s")
            self.process(0.05)

    def click(self, button) -> None:
        if not button.isEnabled() or not button.isVisible():
            raise AssertionError(f"{button.name} cannot be clicked (enabled {button.isEnabled()}, "
                                 f"visible {button.isVisible()})")
        QtTest.QTest.mouseClick(button, QtCore.Qt.LeftButton)
        self.process()

    def toggleSection(self, section) -> None:
        """Click the header of a collapsible section, as a user opens or folds it."""
        header = QtCore.QPoint(QtWidgets.QWidget.width(section) // 2, section._headerHeight() // 2)
        QtTest.QTest.mouseClick(section, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, header)
        self.process()

    def type(self, widget, text: str) -> None:
        widget.setFocus()
        QtTest.QTest.keyClicks(widget, text)
        self.process()

    def key(self, widget, key, modifier=QtCore.Qt.NoModifier) -> None:
        QtTest.QTest.keyClick(widget, key, modifier)
        self.process()

    def screenshot(self, name: str) -> list[Path]:
        """PNG of the whole panel (as tall as its contents) into the test's folder and $SATSEGMENT_SCREENSHOTS."""
        self.process()
        self.container.adjustSize()
        self.container.resize(PANEL_WIDTH, self.container.sizeHint().height())
        self.process()
        image = self.container.grab()
        written = []
        for folder in self.screenshotDirs:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}.png"
            image.save(str(path))
            written.append(path)
        return written

    def close(self) -> None:
        """Clean up the module and destroy the window and its widgets now (their scene observers go with them)."""
        self.widget.exit()  # Slicer leaves the module before it cleans it up
        self.widget.cleanup()
        self.env.mainWindow.close()
        self.env.mainWindow.deleteLater()
        QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.DeferredDelete)
        self.process()


def installSlicer(temporaryPath: str, monkeypatch) -> object:
    """qt, ctk and the application's parts of `slicer`, for one test."""
    ctk, ctkCustom = ctkwidgets.buildModule()
    monkeypatch.setitem(sys.modules, "ctk", ctk)
    monkeypatch.setitem(sys.modules, "qt", pythonqt.buildModule({**ctkCustom, **mrmlwidgets.customWidgets()}))
    return slicerapp.install(temporaryPath, monkeypatch)


def loadModule(monkeypatch):
    """SATSegment.py imported as Slicer imports a scripted module: by file, under the name 'SATSegment'."""
    for name in [name for name in sys.modules if name.split(".")[0] == "SATSegmentWidgets"]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh with this test's qt, as Slicer's Reload does
    spec = importlib.util.spec_from_file_location("SATSegment", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "SATSegment", module)
    spec.loader.exec_module(module)
    return module


def openPanel(env, module, user: ScriptedUser, screenshotDirs: list[Path], exceptions: list, logic=None) -> Panel:
    """Create the module and its widget the way Slicer's module manager does, and enter the module."""
    import slicer

    moduleParent = slicerapp.ModuleParent()
    module.SATSegment(moduleParent)
    container = slicer.qSlicerScriptedLoadableModuleWidget()
    scroll = QtWidgets.QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(container)
    dock = QtWidgets.QDockWidget("Modules")
    dock.setWidget(scroll)
    env.mainWindow.addDockWidget(QtCore.Qt.LeftDockWidgetArea, dock)
    env.mainWindow.setCentralWidget(QtWidgets.QLabel("(views)"))
    env.mainWindow.resize(1366, SCREEN_HEIGHT)
    widget = module.SATSegmentWidget(container, logic=logic)
    widget.setup()
    container.isEntered = True
    widget.enter()
    env.mainWindow.show()
    panel = Panel(env, module, widget, container, user, screenshotDirs, exceptions)
    panel.moduleParent = moduleParent
    panel.process()
    return panel


def screenshotDirs(tmp_path: Path) -> list[Path]:
    dirs = [tmp_path / "screenshots"]
    if os.environ.get("SATSEGMENT_SCREENSHOTS"):
        dirs.append(Path(os.environ["SATSEGMENT_SCREENSHOTS"]))
    return dirs
