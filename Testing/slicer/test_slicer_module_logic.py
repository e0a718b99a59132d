"""SATSegment.py loaded as Slicer loads it (under the Qt harness), and the Qt-free parts its logic puts
together (vocabulary, prompt list, dependencies, models) checked against the real vocabulary and model store."""

from __future__ import annotations

import pytest

from SATSegmentSlicerLib import dependencies
from SATSegmentSlicerLib.dependencies import DependencyInstaller
from SATSegmentSlicerLib.modelsetup import ModelSetup
from SATSegmentSlicerLib.prompts import PromptList, Vocabulary


def test_module_file_loads_and_defines_the_slicer_classes(satsegment):
    for name in ("SATSegment", "SATSegmentWidget", "SATSegmentLogic", "SATSegmentTest", "SATSegmentParameterNode"):
        assert hasattr(satsegment, name)
    logic = satsegment.SATSegmentLogic()
    node = logic.getParameterNode()
    assert node.prompts == [] and node.model == "nano" and node.conflictPolicy == "auto"
    node.prompts = ["liver"]
    assert logic.getParameterNode().prompts == ["liver"]  # stored in the scene's singleton node


def test_vocabulary_resolves_prompts_and_reports_unknown_ones():
    vocabulary = Vocabulary()
    assert vocabulary.resolve("Liver", "ct") == ("liver", [])
    term, suggestions = vocabulary.resolve("banana bread", "ct")
    assert term is None and isinstance(suggestions, list)
    assert [s.term for s in vocabulary.suggestions("left kid", "ct")][:1] == ["left kidney"]
    assert vocabulary.suggestions("   ", "ct") == []
    assert "Thoracic organs at risk" in vocabulary.presets()


def test_a_pasted_structure_list_is_resolved_entry_by_entry():
    terms, unresolved = Vocabulary.resolveList("Parotid_L; Parotid_R; SpinalCord\nBrainstem, Bone_Mandible;"
                                               " left parotid gland; lefft lung upper; banana bread", "ct")
    assert terms == ["left parotid gland", "right parotid gland", "spinal cord", "brainstem", "mandible"]  # once each
    assert list(unresolved) == ["lefft lung upper", "banana bread"]  # never added, listed in order
    assert unresolved["lefft lung upper"][0] == "left lung upper lobe"
    csv = "Structure ID;Volume Type\nParotid_L;Organ\nGTVp;GTV\n"  # a European-Excel structure template
    assert Vocabulary.resolveList(csv, "ct")[0] == ["left parotid gland"]
    assert list(Vocabulary.resolveList(csv, "ct")[1]) == ["GTVp"]


def test_prompt_list_keeps_order_without_duplicates_and_forgets_removed_free_text():
    prompts = PromptList().adding(["liver", "spleen"]).adding(["liver", "my organ"], ["my organ"])
    assert prompts.prompts == ("liver", "spleen", "my organ") and prompts.freeText == ("my organ",)
    assert prompts.removing(["my organ"]) == PromptList(("liver", "spleen"), ())


def test_model_setup_knows_missing_models(isolated_model_home):
    models = ModelSetup(["python"], None)
    assert models.missing("nano") == "SAT-Nano"  # empty SATSEGMENT_HOME
    assert models.missing("/some/model/folder") is None  # folders are not registry models
    assert "official" in models.licence().lower()
    assert models.folder() == isolated_model_home / "models" and models.folder().is_dir()


@pytest.fixture
def installer(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-package-xyz>=1\npytest\n")
    calls = []
    installer = DependencyInstaller(requirements, lambda: calls.append("torch") or object(), calls.append)
    return installer, calls


def test_installer_lists_missing_packages_and_installs_only_those(installer):
    installer, calls = installer
    assert installer.missing() == ["no-such-package-xyz>=1"]  # torch and pytest are installed here
    outcome = installer.install()
    assert outcome.status == "installed" and calls == [["no-such-package-xyz>=1"]]


def test_installer_asks_for_a_restart_or_the_pytorch_extension(installer, monkeypatch):
    installer, calls = installer
    monkeypatch.setattr(dependencies, "torchMissing", lambda: True)
    assert installer.missing()[0] == "torch" + dependencies.TORCH_REQUIREMENT
    installer.installTorch = lambda: None  # PyTorchUtils: installed, Slicer must restart
    assert installer.install().status == "restart" and calls == []

    def noExtension():
        raise ImportError("No module named 'PyTorchUtils'")

    installer.installTorch = noExtension
    assert installer.install().status == "noPyTorchExtension" and calls == []


def test_self_test_runs_and_skips_inference_without_the_model(satsegment, slicer_env, isolated_model_home, capsys):
    """Slicer's module self-test (Reload and Test): the checks that need no model, then a clear skip."""
    slicer_env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "left over")
    test = satsegment.SATSegmentTest()
    test.runTest()
    assert slicer_env.scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 0  # setUp clears
    assert "inference test skipped" in capsys.readouterr().out
