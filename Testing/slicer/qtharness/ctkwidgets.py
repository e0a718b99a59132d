"""Stand-ins for the CTK widgets the module uses: real Qt widgets with CTK's properties and signals."""

from __future__ import annotations

import types
from typing import Callable

from PySide6 import QtCore, QtGui, QtWidgets

from .pythonqt import pythonQtClass


class ctkCollapsibleButton(QtWidgets.QAbstractButton):
    """ctkCollapsibleButton: a header button that shows or hides the widgets of its layout.

    Like CTK's, it is checkable (checked = expanded), has the `collapsed` property and the
    `contentsCollapsed(bool)` signal, and only its header reacts to clicks.
    """

    contentsCollapsed = QtCore.Signal(bool)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setCheckable(True)
        self.setChecked(True)
        self._collapsedState = False
        self.setSizePolicy(QtWidgets.QSizePolicy.Preferred, QtWidgets.QSizePolicy.Preferred)
        self.toggled.connect(self._onToggled)

    def _headerHeight(self) -> int:
        return QtWidgets.QWidget.fontMetrics(self).height() + 10

    def _getCollapsed(self) -> bool:
        return self._collapsedState

    def _setCollapsed(self, collapsed: bool) -> None:
        self.setChecked(not collapsed)
        self._onToggled(not collapsed)

    collapsed = QtCore.Property(bool, _getCollapsed, _setCollapsed)

    def _onToggled(self, checked: bool) -> None:
        changed = self._collapsedState != (not checked)
        self._collapsedState = not checked
        self._layoutContents()
        children = [child for child in self.children() if isinstance(child, QtWidgets.QWidget)]
        if changed and self._collapsedState:  # remember what was hidden on purpose, as CTK does
            self._hiddenBefore = {child for child in children if child.isHidden()}
        for child in children:
            if child not in getattr(self, "_hiddenBefore", set()):
                child.setVisible(checked)
        self.updateGeometry()
        if changed:
            self.contentsCollapsed.emit(self._collapsedState)

    def _layoutContents(self) -> None:
        layout = QtWidgets.QWidget.layout(self)
        if layout is not None:
            margins = layout.contentsMargins()
            layout.setContentsMargins(margins.left(), self._headerHeight() + 4, margins.right(), margins.bottom())

    def showEvent(self, event) -> None:
        self._layoutContents()
        super().showEvent(event)

    def sizeHint(self) -> QtCore.QSize:
        self._layoutContents()
        layout = QtWidgets.QWidget.layout(self)
        if self._collapsedState or layout is None:
            return QtCore.QSize(100, self._headerHeight())
        return layout.sizeHint().expandedTo(QtCore.QSize(100, self._headerHeight()))

    def minimumSizeHint(self) -> QtCore.QSize:
        layout = QtWidgets.QWidget.layout(self)
        if self._collapsedState or layout is None:
            return QtCore.QSize(50, self._headerHeight())
        self._layoutContents()
        return layout.minimumSize()

    def hitButton(self, pos) -> bool:
        return pos.y() < self._headerHeight()

    def paintEvent(self, event) -> None:
        painter = QtWidgets.QStylePainter(self)
        option = QtWidgets.QStyleOptionButton()
        option.initFrom(self)
        option.rect = QtCore.QRect(0, 0, QtWidgets.QWidget.width(self), self._headerHeight())
        option.state |= QtWidgets.QStyle.State_Raised
        painter.drawControl(QtWidgets.QStyle.CE_PushButtonBevel, option)
        arrow = QtWidgets.QStyleOption()
        arrow.initFrom(self)
        size = self._headerHeight() - 12
        arrow.rect = QtCore.QRect(6, 6, size, size)
        primitive = QtWidgets.QStyle.PE_IndicatorArrowRight if self._collapsedState else QtWidgets.QStyle.PE_IndicatorArrowDown
        painter.drawPrimitive(primitive, arrow)
        painter.drawText(QtCore.QRect(size + 12, 0, QtWidgets.QWidget.width(self) - size - 12, self._headerHeight()),
                         QtCore.Qt.AlignVCenter | QtCore.Qt.AlignLeft, QtWidgets.QAbstractButton.text(self))
        if not self._collapsedState:
            frame = QtCore.QRect(0, self._headerHeight(), QtWidgets.QWidget.width(self) - 1,
                                 QtWidgets.QWidget.height(self) - self._headerHeight() - 1)
            painter.setPen(QtGui.QColor("#b0b0b0"))
            painter.drawRect(frame)


Answerer = Callable[[QtWidgets.QMessageBox], int]


class ctkMessageBox(QtWidgets.QMessageBox):
    """ctkMessageBox, whose `exec_()` is answered by the harness's scripted user instead of blocking."""

    answerer: Answerer | None = None

    def exec_(self) -> int:
        if ctkMessageBox.answerer is None:
            raise AssertionError(f"a dialog opened that the test did not expect: {self.text()!r}")
        return ctkMessageBox.answerer(self)

    exec = exec_


def buildModule() -> tuple[types.ModuleType, dict[str, type]]:
    """The `ctk` module and the custom widgets the .ui loader creates."""
    module = types.ModuleType("ctk")
    module.ctkCollapsibleButton = pythonQtClass(ctkCollapsibleButton)
    module.ctkMessageBox = pythonQtClass(ctkMessageBox)
    return module, {"ctkCollapsibleButton": module.ctkCollapsibleButton}
