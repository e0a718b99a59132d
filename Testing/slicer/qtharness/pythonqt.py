"""PythonQt's `qt` module, rebuilt on PySide6 strictly enough that code written for Slicer runs unchanged.

What PythonQt does differently from PySide and is reproduced here:

* Qt properties are Python attributes: `button.text`, `button.enabled = False`, `combo.currentData`.
  Every class taken from `qt` is a subclass whose Qt meta-properties are Python properties; setting a name
  that is neither a Qt property nor an existing attribute raises (PythonQt would not create it either).
* `obj.connect("activated(QString)", slot)` and `sender.connect(signal, receiver, slot)`: signals by their
  C++ signature, checked against the object's meta-object (an unknown signature raises).
* `obj.name` is the object name (Slicer's `childWidgetVariables` relies on it); `obj.className()`.
* `QFileDialog.getOpenFileName` returns the file name only (PySide returns a (name, filter) tuple), and
  `QInputDialog.getMultiLineText` the text only (empty when cancelled).
* `QUiLoader` creates these classes for every widget of a .ui file, and the stand-ins for custom widgets
  registered with `registerCustomWidget`; the .ui's `<connections>` are made with C++ pointer types
  (`vtkMRMLScene*`) matched to the stand-ins' Python object signals.

Objects Qt creates and returns (a QCompleter's popup, `selectedItems()`) stay plain PySide objects.
"""

from __future__ import annotations

import sys
import types
import xml.etree.ElementTree as ET

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

# C++ pointer types of .ui connections that the Python stand-ins carry as `object` signals
POINTER_TYPES = {"vtkMRMLScene*", "vtkMRMLNode*", "vtkObject*"}
# Qt properties read through virtual functions: a Python property of that name would shadow the override
VIRTUAL_GETTERS = {"sizeHint", "minimumSizeHint"}
_SOURCES = (QtCore, QtGui, QtWidgets, QtUiTools)
_compat: dict[type, type] = {}


def _signature(text: str) -> tuple[str, list[str]]:
    normalized = QtCore.QMetaObject.normalizedSignature(text).data().decode()
    name, _, args = normalized.partition("(")
    args = args.rstrip(")")
    return name, [a for a in args.split(",") if a]


def _findSignal(obj: QtCore.QObject, signature: str) -> str:
    """The meta-object signature of `signature` on obj; C++ pointer types match Python object signals."""
    meta = obj.metaObject()
    normalized = QtCore.QMetaObject.normalizedSignature(signature).data().decode()
    if meta.indexOfSignal(normalized) >= 0:
        return normalized
    name, args = _signature(signature)
    for index in range(meta.methodCount()):
        method = meta.method(index)
        if method.methodType() != QtCore.QMetaMethod.Signal:
            continue
        candidate, candidateArgs = _signature(method.methodSignature().data().decode())
        if candidate == name and len(candidateArgs) == len(args) and all(
                a == b or (a in POINTER_TYPES and b == "PyObject") for a, b in zip(args, candidateArgs)):
            return method.methodSignature().data().decode()
    raise AttributeError(f"{meta.className()} has no signal {signature}")


class PythonQtMixin:
    """Attribute access and connections as PythonQt gives them."""

    def __getattribute__(self, name: str):
        if name in ("connect", "disconnect"):  # PySide resolves these on QObject before any subclass
            return types.MethodType(getattr(PythonQtMixin, name), self)
        return super().__getattribute__(name)

    def connect(self, signal: str, receiverOrSlot, slot: str | None = None):
        signature = _findSignal(self, signal)
        if slot is not None:
            slotName = slot.partition("(")[0]
            if not hasattr(receiverOrSlot, slotName):
                raise AttributeError(f"{type(receiverOrSlot).__name__} has no slot {slot}")
            receiverOrSlot = getattr(receiverOrSlot, slotName)
        if not callable(receiverOrSlot):
            raise TypeError(f"connect({signal!r}, ...) needs a callable, got {receiverOrSlot!r}")
        return QtCore.QObject.connect(self, QtCore.SIGNAL(signature), receiverOrSlot)

    def disconnect(self, signal: str, slot):
        return QtCore.QObject.disconnect(self, QtCore.SIGNAL(_findSignal(self, signal)), slot)

    def className(self) -> str:
        return self.metaObject().className()

    _loading = False  # QUiLoader itself sets each child as an attribute of the top-level widget

    def __setattr__(self, name: str, value) -> None:
        if (not PythonQtMixin._loading and not name.startswith("_") and not hasattr(type(self), name)
                and name not in self.__dict__):
            raise AttributeError(f"{type(self).__name__} has no Qt property '{name}'")
        super().__setattr__(name, value)


class _QtProperty:
    """A Qt property as a Python attribute of instances; on the class, the C++ name's other meaning stays
    reachable, as in PythonQt (`qt.QTimer.singleShot(0, f)` is the static function, `timer.singleShot` the property)."""

    def __init__(self, base: type, name: str, writable: bool) -> None:
        self.base, self.name, self.writable = base, name, writable

    def __get__(self, instance, owner=None):
        if instance is None:
            return getattr(self.base, self.name, self)
        return QtCore.QObject.property(instance, self.name)

    def __set__(self, instance, value) -> None:
        if not self.writable:
            raise AttributeError(f"{type(instance).__name__}.{self.name} is read-only")
        if not QtCore.QObject.setProperty(instance, self.name, value):
            raise TypeError(f"{type(instance).__name__}.{self.name} cannot be set to {value!r}")


def _objectName(self) -> str:
    return QtCore.QObject.objectName(self)


def pythonQtClass(base: type, namespace: dict | None = None) -> type:
    """The PythonQt flavour of a QObject class: its meta-properties as Python properties."""
    if base in _compat:
        return _compat[base]
    meta = base.staticMetaObject
    attributes = {"__module__": "qt", "name": property(_objectName)}
    pythonDefined = {name for k in base.__mro__ if not k.__module__.startswith(("PySide6", "Shiboken"))
                     for name in vars(k)}
    for index in range(meta.propertyCount()):
        name = meta.property(index).name()
        # virtual getters stay methods (Qt calls them), and so do names a Python class defines itself
        if name not in VIRTUAL_GETTERS and name not in pythonDefined:
            attributes[name] = _QtProperty(base, name, meta.property(index).isWritable())
    attributes.update(namespace or {})
    cls = type(base.__name__, (PythonQtMixin, base), attributes)
    _compat[base] = cls
    return cls


class _FileDialogStatics:
    @staticmethod
    def getOpenFileName(*args, **kwargs) -> str:
        return QtWidgets.QFileDialog.getOpenFileName(*args, **kwargs)[0]

    @staticmethod
    def getSaveFileName(*args, **kwargs) -> str:
        return QtWidgets.QFileDialog.getSaveFileName(*args, **kwargs)[0]


class _InputDialogStatics:
    @staticmethod
    def getMultiLineText(*args, **kwargs) -> str:
        """PythonQt drops the `bool* ok` out-parameter: the text, empty when cancelled."""
        text, ok = QtWidgets.QInputDialog.getMultiLineText(*args, **kwargs)
        return text if ok else ""


class UiLoader(QtUiTools.QUiLoader):
    """QUiLoader creating PythonQt-flavoured widgets and the registered custom-widget stand-ins."""

    customWidgets: dict[str, type] = {}

    def createWidget(self, className: str, parent=None, name: str = ""):
        if className in self.customWidgets:
            widget = self.customWidgets[className](parent)
        else:
            base = getattr(QtWidgets, className, None)
            if base is None:
                raise TypeError(f"the .ui uses {className}, which neither Qt nor the harness provides")
            widget = pythonQtClass(base)(parent)
        widget.setObjectName(name)
        return widget

    def load(self, device, parent=None):
        """Load the .ui, then make its <connections> the way PythonQt signatures resolve."""
        data = bytes(device.readAll().data())
        root = ET.fromstring(data)
        connections = root.find("connections")
        if connections is not None:
            root.remove(connections)
        buffer = QtCore.QBuffer()
        buffer.setData(ET.tostring(root))
        buffer.open(QtCore.QIODevice.ReadOnly)
        PythonQtMixin._loading = True
        try:
            widget = super().load(buffer, parent)
        finally:
            PythonQtMixin._loading = False
        if widget is None:
            raise RuntimeError(self.errorString())
        for connection in (connections if connections is not None else []):
            sender, receiver = (widget if QtCore.QObject.objectName(widget) == connection.findtext(key)
                                else widget.findChild(QtCore.QObject, connection.findtext(key))
                                for key in ("sender", "receiver"))
            if sender is None or receiver is None:
                raise RuntimeError(f"connection between unknown widgets in the .ui: {ET.tostring(connection)!r}")
            sender.connect(connection.findtext("signal"), receiver, connection.findtext("slot"))
        return widget


def buildModule(customWidgets: dict[str, type]) -> types.ModuleType:
    """The `qt` module: Qt classes (QObject ones in their PythonQt flavour), plus QUiLoader."""
    module = types.ModuleType("qt")
    UiLoader.customWidgets = customWidgets
    special = {"QUiLoader": pythonQtClass(UiLoader),
               "QFileDialog": pythonQtClass(QtWidgets.QFileDialog, dict(vars(_FileDialogStatics))),
               "QInputDialog": pythonQtClass(QtWidgets.QInputDialog, dict(vars(_InputDialogStatics)))}

    def getattr_(name: str):
        if name in special:
            return special[name]
        for source in _SOURCES:
            value = getattr(source, name, None)
            if value is not None:
                if isinstance(value, type) and issubclass(value, QtCore.QObject):
                    return pythonQtClass(value)
                return value
        raise AttributeError(f"module 'qt' has no attribute '{name}'")

    module.__getattr__ = getattr_
    return module


def install(customWidgets: dict[str, type]) -> types.ModuleType:
    module = buildModule(customWidgets)
    sys.modules["qt"] = module
    return module
