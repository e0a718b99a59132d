"""What the Slicer application adds to the `slicer` package, for a module running under the harness.

The MRML classes and `slicer.util` are Slicer's own (slicer-core wheel); this file provides the
application object, the main window with its module selector, the scene, `slicer.modules`, `slicer.i18n`,
`ScriptedLoadableModule` and `parameterNodeWrapper`, following Slicer's public behaviour.
"""

from __future__ import annotations

import json
import sys
import types
import typing
import unittest

import slicer
import vtk
from PySide6 import QtCore, QtGui, QtWidgets

from .pythonqt import pythonQtClass


class qSlicerApplication(QtCore.QObject):
    """slicer.app: the signals, paths and cursor helpers modules use. `restart()` is recorded, not done."""

    startupCompleted = QtCore.Signal()
    aboutToQuit = QtCore.Signal()
    restartRequests = 0  # attributes the harness adds are declared (PythonQtMixin refuses unknown ones)

    def __init__(self, temporaryPath: str) -> None:
        super().__init__()
        self._temporaryPath = temporaryPath
        self.restartRequests = 0

    def _getTemporaryPath(self) -> str:
        return self._temporaryPath

    temporaryPath = QtCore.Property(str, _getTemporaryPath)

    def _getApplicationName(self) -> str:
        return "Slicer"

    applicationName = QtCore.Property(str, _getApplicationName)

    def testingEnabled(self) -> bool:
        return False  # dialogs are shown (and answered by the harness's scripted user)

    def topLevelWidgets(self) -> list:
        return QtWidgets.QApplication.topLevelWidgets()

    def processEvents(self) -> None:
        QtWidgets.QApplication.processEvents()

    def setOverrideCursor(self, cursor) -> None:
        QtWidgets.QApplication.setOverrideCursor(cursor)

    def restoreOverrideCursor(self) -> None:
        QtWidgets.QApplication.restoreOverrideCursor()

    def overrideCursor(self):
        return QtWidgets.QApplication.overrideCursor()

    def restart(self) -> None:
        self.restartRequests += 1


class qSlicerModuleSelector(QtCore.QObject):
    """The main window's module selector: remembers which module was selected."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.selected: list[str] = []

    def selectModule(self, name: str) -> None:
        self.selected.append(name)


class qSlicerMainWindow(QtWidgets.QMainWindow):
    """The main window: the module panel in a dock on the left, as Slicer lays it out."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("qSlicerMainWindow")
        self._selector = qSlicerModuleSelector(self)

    def moduleSelector(self) -> qSlicerModuleSelector:
        return self._selector


class qSlicerScriptedLoadableModuleWidget(QtWidgets.QWidget):
    """The C++ parent of a scripted module's widget: a vertical layout and the `isEntered` property."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        QtWidgets.QVBoxLayout(self)
        self._entered = False

    def _getEntered(self) -> bool:
        return self._entered

    def _setEntered(self, entered: bool) -> None:
        self._entered = entered

    isEntered = QtCore.Property(bool, _getEntered, _setEntered)


class qMRMLSegmentEditorWidget(QtWidgets.QWidget):
    """The Segment Editor's editor widget, as far as other modules drive it (records what they set)."""

    segmentation = source = currentSegment = None

    def setSegmentationNode(self, node) -> None:
        self.segmentation = node

    def setSourceVolumeNode(self, node) -> None:
        self.source = node

    def setCurrentSegmentID(self, segmentId: str) -> None:
        self.currentSegment = segmentId


class qSlicerDICOMExportDialog(QtCore.QObject):
    """Slicer's DICOM export dialog (qSlicerDICOMExportDialog.h): `setMRMLScene(scene)` then
    `execDialog(itemToSelect)`, a subject hierarchy item ID of that scene. Records what it was opened on."""

    opened: list = []

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene) -> None:
        if not isinstance(scene, slicer.vtkMRMLScene):
            raise TypeError(f"setMRMLScene takes a vtkMRMLScene, not {type(scene).__name__}")
        self._scene = scene

    def execDialog(self, itemToSelect: int = 0) -> bool:
        if self._scene is None:
            raise AssertionError("execDialog before setMRMLScene: the dialog would show no data")
        if not isinstance(itemToSelect, int) or isinstance(itemToSelect, bool):
            raise TypeError(f"execDialog takes a subject hierarchy item ID (vtkIdType), not {itemToSelect!r}")
        hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self._scene)
        if itemToSelect and not hierarchy.GetItemDataNode(itemToSelect) and not hierarchy.GetItemName(itemToSelect):
            raise AssertionError(f"item {itemToSelect} is not in the scene's subject hierarchy")
        qSlicerDICOMExportDialog.opened.append(itemToSelect)
        return True


class ModuleParent:
    """qSlicerScriptedLoadableModule's properties a module sets in its constructor (nothing else)."""

    __slots__ = ("title", "categories", "dependencies", "contributors", "helpText", "acknowledgementText")


def _translate(context: str, text: str) -> str:
    return QtCore.QCoreApplication.translate(context, text)


def _tr(text: str) -> str:
    return _translate(sys._getframe(1).f_globals.get("__name__", ""), text)


# -- ScriptedLoadableModule -------------------------------------------------------------------------


class ScriptedLoadableModule:
    def __init__(self, parent) -> None:
        self.parent = parent
        self.moduleName = self.__class__.__name__


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None) -> None:
        if parent is None:
            raise AssertionError("the harness always gives the widget its C++ parent, as Slicer does")
        self.parent = parent
        self.layout = parent.layout()
        self.moduleName = self.__class__.__name__.removesuffix("Widget")
        self.developerMode = False

    def setup(self) -> None:
        pass

    def cleanup(self) -> None:
        pass

    def enter(self) -> None:
        pass

    def exit(self) -> None:
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None) -> None:
        self.moduleName = self.__class__.__name__.removesuffix("Logic")

    def getParameterNode(self):
        """The scene's singleton parameter node of this module, created on first use (as in Slicer)."""
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            node.SetSingletonTag(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            node = scene.AddNode(node)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message: str, msec: int = 1000) -> None:
        print(message)


# -- parameterNodeWrapper ---------------------------------------------------------------------------


def _nodeClass(annotation):
    """The node class of vtkMRML node annotations (Optional or not), else None."""
    optional = typing.get_origin(annotation) is typing.Union and type(None) in typing.get_args(annotation)
    inner = next((a for a in typing.get_args(annotation) if a is not type(None)), None) if optional else annotation
    if isinstance(inner, type) and issubclass(inner, slicer.vtkMRMLNode):
        return inner
    return None


def _field(name: str, annotation, default):
    node = _nodeClass(annotation)

    def getNode(self):
        return self.parameterNode.GetNodeReference(name)

    def setNode(self, value) -> None:
        cls = node  # None is valid for every node parameter, Optional or not (Slicer's NodeSerializer)
        if value is not None and not isinstance(value, cls):
            raise TypeError(f"{name} must be a {cls.__name__}, not {type(value).__name__}")
        if value is not getNode(self):
            self.parameterNode.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            self.parameterNode.Modified()

    def getValue(self):
        text = self.parameterNode.GetParameter(name)
        if text:
            return json.loads(text)
        return [] if annotation == list[str] else default

    def setValue(self, value) -> None:
        if annotation == list[str]:
            if not all(isinstance(v, str) for v in value):
                raise TypeError(f"{name} holds strings only: {value!r}")
            value = list(value)
        elif not isinstance(value, annotation):
            raise TypeError(f"{name} must be a {annotation.__name__}, not {type(value).__name__}")
        self.parameterNode.SetParameter(name, json.dumps(value))

    return property(getNode, setNode) if node else property(getValue, setValue)


class _GuiConnection:
    def __init__(self, wrapper, widget, name: str) -> None:
        self.wrapper, self.widget, self.name = wrapper, widget, name
        self.updating = False
        widget.setCurrentNode(getattr(wrapper, name))
        widget.currentNodeChanged.connect(self.toParameter)
        self.tag = wrapper.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, self.toWidget)

    def toParameter(self, node) -> None:
        if not self.updating:
            setattr(self.wrapper, self.name, node)

    def toWidget(self, caller=None, event=None) -> None:
        self.updating = True
        try:
            self.widget.setCurrentNode(getattr(self.wrapper, self.name))
        finally:
            self.updating = False

    def disconnect(self) -> None:
        self.widget.currentNodeChanged.disconnect(self.toParameter)
        self.wrapper.parameterNode.RemoveObserver(self.tag)


def parameterNodeWrapper(cls):
    """Typed attributes stored in a vtkMRMLScriptedModuleNode, plus `connectGui`/`disconnectGui`."""
    hints = typing.get_type_hints(cls)
    namespace = {name: _field(name, annotation, getattr(cls, name, None)) for name, annotation in hints.items()}

    def __init__(self, parameterNode) -> None:
        object.__setattr__(self, "parameterNode", parameterNode)
        object.__setattr__(self, "_connections", {})

    def __setattr__(self, name: str, value) -> None:
        if name not in hints:
            raise AttributeError(f"{cls.__name__} has no parameter '{name}'")
        object.__setattr__(self, name, value)

    def connectGui(self, gui) -> int:
        connections = []
        for widget in vars(gui).values():
            if not isinstance(widget, QtCore.QObject) or not widget.property("SlicerParameterName"):
                continue
            name = widget.property("SlicerParameterName")
            if name not in hints:
                raise AttributeError(f"{QtCore.QObject.objectName(widget)} is bound to unknown parameter '{name}'")
            if not hasattr(widget, "currentNodeChanged"):
                raise NotImplementedError(f"no GUI connector for {type(widget).__name__} in the harness")
            connections.append(_GuiConnection(self, widget, name))
        tag = len(self._connections) + 1
        self._connections[tag] = connections
        return tag

    def disconnectGui(self, tag) -> None:
        for connection in self._connections.pop(tag, []):
            connection.disconnect()

    namespace.update(__init__=__init__, __setattr__=__setattr__, connectGui=connectGui, disconnectGui=disconnectGui,
                     AddObserver=lambda self, *a: self.parameterNode.AddObserver(*a),
                     RemoveObserver=lambda self, tag: self.parameterNode.RemoveObserver(tag),
                     StartModify=lambda self: self.parameterNode.StartModify(),
                     EndModify=lambda self, was: self.parameterNode.EndModify(was),
                     __doc__=cls.__doc__)
    return type(cls.__name__, (), namespace)


# -- installation -----------------------------------------------------------------------------------


def install(temporaryPath: str, monkeypatch) -> types.SimpleNamespace:
    """Give the `slicer` package what the application adds; returns the objects tests look at."""
    app = pythonQtClass(qSlicerApplication)(temporaryPath)
    window = pythonQtClass(qSlicerMainWindow)()
    editor = pythonQtClass(qMRMLSegmentEditorWidget)()
    editorModule = types.SimpleNamespace(widgetRepresentation=lambda: types.SimpleNamespace(
        self=lambda: types.SimpleNamespace(editor=editor)))
    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    modules = types.SimpleNamespace(segmenteditor=editorModule,
                                    terminologies=types.SimpleNamespace(logic=lambda: terminologies))
    scene = slicer.vtkMRMLScene()
    exportDialog = pythonQtClass(qSlicerDICOMExportDialog)
    monkeypatch.setattr(qSlicerDICOMExportDialog, "opened", [])
    settings = QtCore.QSettings  # Slicer's settings of this user: a file of the test's own
    settings.setDefaultFormat(settings.IniFormat)
    settings.setPath(settings.IniFormat, settings.UserScope, temporaryPath)
    for name, value in (("app", app), ("mrmlScene", scene), ("modules", modules),
                        ("qSlicerScriptedLoadableModuleWidget", pythonQtClass(qSlicerScriptedLoadableModuleWidget)),
                        ("qSlicerDICOMExportDialog", exportDialog)):
        monkeypatch.setattr(slicer, name, value, raising=False)
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr, i18n.translate = _tr, _translate
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest):
        setattr(scripted, cls.__name__, cls)
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = parameterNodeWrapper
    for name, module in (("slicer.i18n", i18n), ("slicer.ScriptedLoadableModule", scripted),
                         ("slicer.parameterNodeWrapper", wrapper)):
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(app=app, mainWindow=window, editor=editor, terminologies=terminologies, scene=scene,
                                 exportDialogs=qSlicerDICOMExportDialog.opened)
