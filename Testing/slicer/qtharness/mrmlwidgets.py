"""Stand-ins for the qMRML widgets of the .ui: real Qt widgets that read and change the MRML scene.

They follow the C++ widgets' public API as far as SATSegment uses it (same names, properties, signals),
observing the slicer-core scene so that nodes added or removed anywhere show up, as in Slicer.
"""

from __future__ import annotations

import weakref

import shiboken6
import slicer
import vtk
from PySide6 import QtCore, QtGui, QtWidgets

from .pythonqt import pythonQtClass


def _whileAlive(widget, method):
    """A VTK observer calling `method` on the widget only while its C++ object exists (as the C++ widgets
    disconnect in their destructors)."""
    reference = weakref.ref(widget)

    def observer(caller, event) -> None:
        alive = reference()
        if alive is not None and shiboken6.isValid(alive):
            method(alive, caller, event)

    return observer


class Observations(list):
    """(VTK object, observer tag) pairs a widget made; removed when the widget's C++ object is destroyed, as
    the C++ widgets disconnect in their destructors (a scene outliving its panel must not call into it)."""

    def __init__(self, widget: QtCore.QObject) -> None:
        super().__init__()
        widget.destroyed.connect(self.removeAll)

    def add(self, observed, event, observer) -> None:
        self.append((observed, observed.AddObserver(event, observer)))

    def removeAll(self, *unused) -> None:
        for observed, tag in self:
            observed.RemoveObserver(tag)
        self.clear()


class qMRMLWidget(QtWidgets.QWidget):
    """qMRMLWidget: holds a scene and tells its children (through the .ui connections) when it changes."""

    mrmlSceneChanged = QtCore.Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(QtWidgets.QWidget):
    """qMRMLNodeComboBox: the scene's nodes of `nodeTypes`, an optional None entry and 'Create new ...'."""

    currentNodeChanged = QtCore.Signal(object)
    currentNodeIDChanged = QtCore.Signal(str)
    nodeAddedByUser = QtCore.Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._combo = QtWidgets.QComboBox(self)
        self._combo.setSizeAdjustPolicy(QtWidgets.QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self._combo.setMinimumContentsLength(12)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._combo)
        self._scene = None
        self._observations = Observations(self)
        self._nodeTypes: list[str] = []
        self._options = {"noneEnabled": False, "addEnabled": True, "removeEnabled": True, "showChildNodeTypes": True,
                         "renameEnabled": False, "editEnabled": False, "selectNodeUponCreation": True}
        self._noneDisplay = "None"
        self._baseName = ""
        self._currentId = ""
        self._combo.activated.connect(self._onActivated)

    # Qt properties of the C++ widget
    def _getNodeTypes(self) -> list[str]:
        return list(self._nodeTypes)

    def _setNodeTypes(self, types: list[str]) -> None:
        self._nodeTypes = list(types)
        self._refresh()

    nodeTypes = QtCore.Property("QStringList", _getNodeTypes, _setNodeTypes)

    def _option(name):  # noqa: N805  (property factory used in the class body)
        def getter(self) -> bool:
            return self._options[name]

        def setter(self, value: bool) -> None:
            self._options[name] = bool(value)
            self._refresh()

        return QtCore.Property(bool, getter, setter)

    noneEnabled = _option("noneEnabled")
    addEnabled = _option("addEnabled")
    removeEnabled = _option("removeEnabled")
    renameEnabled = _option("renameEnabled")
    editEnabled = _option("editEnabled")
    showChildNodeTypes = _option("showChildNodeTypes")
    selectNodeUponCreation = _option("selectNodeUponCreation")
    del _option

    def _getNoneDisplay(self) -> str:
        return self._noneDisplay

    def _setNoneDisplay(self, text: str) -> None:
        self._noneDisplay = text
        self._refresh()

    noneDisplay = QtCore.Property(str, _getNoneDisplay, _setNoneDisplay)

    def _getBaseName(self) -> str:
        return self._baseName

    def _setBaseName(self, name: str) -> None:
        self._baseName = name

    baseName = QtCore.Property(str, _getBaseName, _setBaseName)

    # scene
    def setMRMLScene(self, scene) -> None:
        self._observations.removeAll()
        self._scene = scene
        for event in ([] if scene is None else (slicer.vtkMRMLScene.NodeAddedEvent, slicer.vtkMRMLScene.NodeRemovedEvent,
                                                  slicer.vtkMRMLScene.EndCloseEvent, slicer.vtkMRMLScene.EndImportEvent)):
            self._observations.add(scene, event, _whileAlive(self, qMRMLNodeComboBox._onSceneChanged))
        self._refresh()
        if not self._options["noneEnabled"] and self.currentNode() is None and self._nodes():
            self.setCurrentNode(self._nodes()[0])

    def mrmlScene(self):
        return self._scene

    def _onSceneChanged(self, caller, event) -> None:
        self._refresh()
        if self._currentId and (self._scene is None or self._scene.GetNodeByID(self._currentId) is None):
            self._setCurrent("")
        elif not self._currentId and not self._options["noneEnabled"] and self._nodes():
            self.setCurrentNode(self._nodes()[0])

    def _nodes(self) -> list:
        if self._scene is None:
            return []
        found = []
        for index in range(self._scene.GetNumberOfNodes()):
            node = self._scene.GetNthNode(index)
            if node.GetHideFromEditors():
                continue
            if any(node.GetClassName() == t or (self._options["showChildNodeTypes"] and node.IsA(t)) for t in self._nodeTypes):
                found.append(node)
        return found

    def _refresh(self) -> None:
        combo = self._combo
        blocked = combo.blockSignals(True)
        combo.clear()
        if self._options["noneEnabled"]:
            combo.addItem(self._noneDisplay, "")
        for node in self._nodes():
            combo.addItem(node.GetName(), node.GetID())
        if self._options["addEnabled"] and self._nodeTypes:
            combo.insertSeparator(combo.count())
            combo.addItem(f"Create new {self._typeLabel()}", "__add__")
        combo.setCurrentIndex(max(0, combo.findData(self._currentId)) if combo.count() else -1)
        combo.blockSignals(blocked)

    def _typeLabel(self) -> str:
        label = self._nodeTypes[0].removeprefix("vtkMRML").removesuffix("Node")
        return self._baseName or label

    def _onActivated(self, index: int) -> None:
        data = self._combo.itemData(index)
        if data == "__add__":
            node = self._scene.AddNewNodeByClass(self._nodeTypes[0], self._baseName or self._typeLabel())
            self.nodeAddedByUser.emit(node)
            self._setCurrent(node.GetID())
        else:
            self._setCurrent(data or "")

    def _setCurrent(self, nodeId: str) -> None:
        changed = nodeId != self._currentId
        self._currentId = nodeId
        self._refresh()
        if changed:
            self.currentNodeIDChanged.emit(nodeId)
            self.currentNodeChanged.emit(self.currentNode())

    # public API of qMRMLNodeComboBox
    def currentNode(self):
        return self._scene.GetNodeByID(self._currentId) if self._scene is not None and self._currentId else None

    def currentNodeID(self) -> str:
        return self._currentId

    def setCurrentNode(self, node) -> None:
        self._setCurrent(node.GetID() if node is not None else "")

    def setCurrentNodeID(self, nodeId: str) -> None:
        self._setCurrent(nodeId or "")

    def nodeCount(self) -> int:
        return len(self._nodes())

    # for tests: what a user sees and picks
    def itemTexts(self) -> list[str]:
        return [self._combo.itemText(i) for i in range(self._combo.count()) if self._combo.itemText(i)]

    def chooseItem(self, text: str) -> None:
        index = self._combo.findText(text)
        if index < 0:
            raise LookupError(f"{QtCore.QObject.objectName(self)} has no entry {text!r}: {self.itemTexts()}")
        self._combo.setCurrentIndex(index)
        self._combo.activated.emit(index)


class qMRMLSegmentsTableView(QtWidgets.QWidget):
    """qMRMLSegmentsTableView: the segments of a segmentation node (visibility, colour, name), selectable."""

    selectionChanged = QtCore.Signal(object, object)
    segmentSelectionChanged = QtCore.Signal(object, object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._table = QtWidgets.QTableWidget(0, 3, self)
        self._table.setHorizontalHeaderLabels(["", "", "Name"])
        self._table.horizontalHeader().setStretchLastSection(True)
        self._table.horizontalHeader().setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeToContents)
        self._table.horizontalHeader().setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeToContents)
        self._table.verticalHeader().hide()
        self._table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self._table.setSelectionMode(QtWidgets.QAbstractItemView.ExtendedSelection)
        self._table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._table)
        self._node = None
        self._observations = Observations(self)
        self._table.itemSelectionChanged.connect(lambda: self.selectionChanged.emit(None, None))
        self._table.itemSelectionChanged.connect(lambda: self.segmentSelectionChanged.emit(None, None))

    def setMRMLScene(self, scene) -> None:
        if self._node is not None and self._node.GetScene() is not scene:
            self.setSegmentationNode(None)

    def setSegmentationNode(self, node) -> None:
        self._observations.removeAll()
        self._node = node
        if node is not None:
            segmentation = node.GetSegmentation()
            for event in (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                          slicer.vtkSegmentation.SegmentModified, slicer.vtkSegmentation.SegmentsOrderModified):
                self._observations.add(segmentation, event, _whileAlive(self, qMRMLSegmentsTableView._onChanged))
            self._observations.add(node, vtk.vtkCommand.ModifiedEvent, _whileAlive(self, qMRMLSegmentsTableView._onChanged))
        self._refresh()

    def segmentationNode(self):
        return self._node

    def _onChanged(self, caller, event) -> None:
        self._refresh()

    def _segmentIds(self) -> list[str]:
        if self._node is None:
            return []
        segmentation = self._node.GetSegmentation()
        return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]

    def _refresh(self) -> None:
        selected = set(self.selectedSegmentIDs())
        table = self._table
        blocked = table.blockSignals(True)
        ids = self._segmentIds()
        table.setRowCount(len(ids))
        display = self._node.GetDisplayNode() if self._node is not None else None
        for row, segmentId in enumerate(ids):
            segment = self._node.GetSegmentation().GetSegment(segmentId)
            visible = QtWidgets.QTableWidgetItem()
            visible.setCheckState(QtCore.Qt.Checked if display is None or display.GetSegmentVisibility(segmentId)
                                  else QtCore.Qt.Unchecked)
            color = QtWidgets.QTableWidgetItem()
            color.setBackground(QtGui.QColor.fromRgbF(*segment.GetColor()))
            name = QtWidgets.QTableWidgetItem(segment.GetName())
            for column, item in enumerate((visible, color, name)):
                item.setData(QtCore.Qt.UserRole, segmentId)
                table.setItem(row, column, item)
            if segmentId in selected:
                table.selectRow(row)
        table.blockSignals(blocked)

    def selectedSegmentIDs(self) -> list[str]:
        rows = sorted({index.row() for index in self._table.selectionModel().selectedRows()})
        return [self._table.item(row, 2).data(QtCore.Qt.UserRole) for row in rows if self._table.item(row, 2)]

    def setSelectedSegmentIDs(self, ids: list[str]) -> None:
        self._table.clearSelection()
        mode = self._table.selectionMode()
        self._table.setSelectionMode(QtWidgets.QAbstractItemView.MultiSelection)
        for row, segmentId in enumerate(self._segmentIds()):
            if segmentId in ids:
                self._table.selectRow(row)
        self._table.setSelectionMode(mode)

    def clearSelection(self) -> None:
        self._table.clearSelection()

    def segmentNames(self) -> list[str]:
        """For tests: the names shown, in order."""
        return [self._table.item(row, 2).text() for row in range(self._table.rowCount())]


class qMRMLSegmentationShow3DButton(QtWidgets.QPushButton):
    """qMRMLSegmentationShow3DButton: checked = the segmentation shows closed surfaces in 3D views."""

    def __init__(self, parent=None) -> None:
        super().__init__("Show 3D", parent)
        self.setCheckable(True)
        self.setEnabled(False)
        self._node = None
        self.toggled.connect(self._onToggled)

    def setSegmentationNode(self, node) -> None:
        self._node = node
        self.setEnabled(node is not None)
        blocked = self.blockSignals(True)
        self.setChecked(bool(node is not None and node.GetSegmentation().ContainsRepresentation(
            slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName())))
        self.blockSignals(blocked)

    def segmentationNode(self):
        return self._node

    def _onToggled(self, checked: bool) -> None:
        if self._node is None:
            return
        if checked:
            self._node.CreateClosedSurfaceRepresentation()
            if self._node.GetDisplayNode() is not None:
                self._node.GetDisplayNode().SetVisibility3D(True)
        else:
            self._node.RemoveClosedSurfaceRepresentation()


def customWidgets() -> dict[str, type]:
    """The qMRML classes the .ui may use, as the loader creates them."""
    return {
        "qMRMLWidget": pythonQtClass(qMRMLWidget),
        "qMRMLNodeComboBox": pythonQtClass(qMRMLNodeComboBox),
        "qMRMLSegmentsTableView": pythonQtClass(qMRMLSegmentsTableView),
        "qMRMLSegmentationShow3DButton": pythonQtClass(qMRMLSegmentationShow3DButton),
    }
