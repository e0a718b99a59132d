"""The harness's PythonQt layer is strict: what PythonQt would refuse (unknown properties, signals, classes,
widgets in a .ui) raises instead of being accepted silently, and PythonQt's conventions work as in Slicer."""

from __future__ import annotations

import pytest


@pytest.fixture
def qt(slicer_env):
    import qt

    return qt


def test_qt_properties_are_attributes_and_unknown_names_raise(qt):
    button = qt.QPushButton()
    button.text = "Apply"
    assert button.text == "Apply" and button.enabled
    button.enabled = False
    assert not button.isEnabled()
    with pytest.raises(AttributeError):
        button.textt = "typo"
    with pytest.raises(AttributeError):
        qt.QNoSuchWidget


def test_connect_by_signature_checks_the_signal(qt):
    button, calls = qt.QPushButton(), []
    button.connect("clicked()", lambda: calls.append("clicked"))
    button.click()
    assert calls == ["clicked"]
    with pytest.raises(AttributeError):
        button.connect("pressedTwice()", lambda: None)


def test_static_functions_sharing_a_property_name_stay_callable(qt):
    timer, fired = qt.QTimer(), []
    timer.singleShot = True
    assert timer.singleShot is True
    qt.QTimer.singleShot(0, lambda: fired.append(True))
    qt.QApplication.processEvents()
    assert fired == [True]


def test_a_ui_with_an_unknown_widget_class_is_refused(qt, tmp_path):
    ui = tmp_path / "bad.ui"
    ui.write_text('<ui version="4.0"><class>Bad</class><widget class="QWidget" name="Bad"><layout class="QVBoxLayout">'
                  '<item><widget class="qMRMLNoSuchWidget" name="mystery"/></item></layout></widget></ui>')
    loader = qt.QUiLoader()
    file = qt.QFile(str(ui))
    file.open(qt.QFile.ReadOnly)
    with pytest.raises(TypeError, match="qMRMLNoSuchWidget"):
        loader.load(file)
