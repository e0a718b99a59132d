"""SATSegment.py itself, outside the Slicer application: the Qt-only pieces Slicer provides (qt, ctk,
ScriptedLoadableModule, parameterNodeWrapper, i18n) are replaced by minimal stand-ins so the module
file loads, and the logic's non-GUI methods are checked against the real vocabulary and model store."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

MODULE_FILE = Path(__file__).resolve().parents[2] / "SATSegment" / "SATSegment.py"

slicer = pytest.importorskip("slicer")


class _Anything:
    """Accepts any construction, attribute and call (a QTimer, a signal, a Qt enum...)."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return _Anything()

    def __call__(self, *args, **kwargs):
        return _Anything()


class _Base:
    def __init__(self, *args, **kwargs):
        pass


@pytest.fixture
def module(monkeypatch, tmp_path):
    monkeypatch.setenv("SATSEGMENT_HOME", str(tmp_path / "home"))
    qt = types.ModuleType("qt")
    qt.__getattr__ = lambda name: _Anything
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "ctk", types.ModuleType("ctk"))
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest"):
        setattr(scripted, name, type(name, (_Base,), {}))
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    for name, stub in (("slicer.ScriptedLoadableModule", scripted), ("slicer.parameterNodeWrapper", wrapper), ("slicer.i18n", i18n)):
        monkeypatch.setitem(sys.modules, name, stub)
    spec = importlib.util.spec_from_file_location("SATSegment", MODULE_FILE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_module_file_loads_and_defines_the_slicer_classes(module):
    for name in ("SATSegment", "SATSegmentWidget", "SATSegmentLogic", "SATSegmentTest", "SATSegmentParameterNode"):
        assert hasattr(module, name)
    assert module.SATSegmentParameterNode.__annotations__["prompts"] == list[str]
    assert {value for value, _ in module.MODELS} == set(module.SATSegmentLogic()._modelstore().registry())


def test_logic_resolves_prompts_and_reports_unknown_ones(module):
    logic = module.SATSegmentLogic()
    assert logic.resolvePrompt("Liver", "ct") == ("liver", [])
    term, suggestions = logic.resolvePrompt("banana bread", "ct")
    assert term is None and isinstance(suggestions, list)
    assert [s.term for s in logic.suggestions("left kid", "ct")][:1] == ["left kidney"]
    assert logic.suggestions("   ", "ct") == []
    assert "Thoracic organs at risk" in logic.presets()


def test_logic_knows_dependencies_and_missing_models(module):
    logic = module.SATSegmentLogic()
    assert logic.missingDependencies() == []  # this test environment has every package
    assert logic.modelMissing("nano") == "SAT-Nano"  # empty SATSEGMENT_HOME
    assert logic.modelMissing("/some/model/folder") is None  # folders are not registry models
    assert "official" in logic.licenceText().lower()
    assert logic.modelsFolder().is_dir()
