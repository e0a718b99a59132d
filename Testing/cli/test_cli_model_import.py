"""`satsegment models import`: finding the two official files by name or, when renamed, by content,
and loading the pair strictly before installing it.

Full-size SAT-Nano/SAT-Pro checkpoints are ~0.5-2 GB, so these tests write *shape-only* copies: every
key of the official layout (DDP `module.` prefix, `model_state_dict` wrapper, deep-supervision heads,
`position_ids` buffer) with its real shape, but each tensor is a stride-0 view of one number, so a file
is a few tens of kB and loads (memory-mapped) exactly like the real one.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from SATSegmentLib import modelstore
from SATSegmentLib.errors import InputError, ModelError
from SATSegmentLib.model.checkpoint import expected_shapes, segmentation_state
from SATSegmentLib.model.config import SATConfig


def _shape_only(shapes: dict[str, tuple[int, ...]], value: float) -> dict[str, torch.Tensor]:
    one = torch.full((1,), value)
    return {k: one.expand(shape) if shape else one.reshape(()) for k, shape in shapes.items()}


def write_segmentation(path: Path, variant: str, value: float = 1.0) -> Path:
    """A shape-only official segmentation checkpoint of `variant` ('nano' or 'pro')."""
    config = SATConfig.for_variant(variant)
    state = _shape_only(expected_shapes("segmentation", config), value)
    widths = config.features_per_stage[1:1 + len(config.deep_supervision_hidden)]
    for i, (hidden, out) in enumerate(zip(config.deep_supervision_hidden, widths)):
        state.update(_shape_only({f"mid_mask_embed_proj.{i}.0.weight": (hidden, config.query_dim),
                                  f"mid_mask_embed_proj.{i}.0.bias": (hidden,),
                                  f"mid_mask_embed_proj.{i}.2.weight": (out, hidden),
                                  f"mid_mask_embed_proj.{i}.2.bias": (out,)}, value))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 0, "model_state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path


def write_text_encoder(path: Path, value: float = 2.0, modalities: int = 4) -> Path:
    """A shape-only official text-encoder checkpoint (same architecture for Nano and Pro)."""
    config = SATConfig.nano()
    shapes = expected_shapes("text", config)
    shapes["modality_embed.weight"] = (modalities, shapes["modality_embed.weight"][1])
    state = {f"module.{k}": v for k, v in _shape_only(shapes, value).items()}
    state["module.text_tower.biolord.embeddings.position_ids"] = torch.arange(514).unsqueeze(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 0, "model_state_dict": state}, path)
    return path


@pytest.fixture
def home(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("SATSEGMENT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _installed_pair(folder: Path) -> tuple[float, float]:
    """The fill values of the installed files (tells which candidate was picked)."""
    seg = segmentation_state(folder / "segmentation.pth", SATConfig.for_variant(
        json.loads((folder / "sat_config.json").read_text())["variant"]))
    text = torch.load(folder / "text_encoder.pth", weights_only=True)["model_state_dict"]
    return float(next(iter(seg.values())).flatten()[0]), float(text["module.modality_embed.weight"][0, 0])


def _no_leftovers(home: Path) -> None:
    models = home / "models"
    assert not [p for p in models.iterdir() if p.name.startswith(".import-")] if models.exists() else True


def test_official_names_in_folder_and_zip(home, tmp_path):
    src = tmp_path / "SAT" / "Nano"
    write_segmentation(src / "nano.pth", "nano")
    write_text_encoder(src / "nano_text_encoder.pth")
    folder = modelstore.import_model("nano", tmp_path / "SAT")
    assert (folder / "segmentation.pth").read_bytes() == (src / "nano.pth").read_bytes()
    assert (folder / "text_encoder.pth").read_bytes() == (src / "nano_text_encoder.pth").read_bytes()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"]["segmentation.pth"]["source_file"] == str(src / "nano.pth")
    assert modelstore.verify("nano")
    with pytest.raises(InputError, match="already installed"):
        modelstore.import_model("nano", src)
    modelstore.remove("nano")
    archive = tmp_path / "nano.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(src / "nano.pth", "SAT/Nano/nano.pth")
        z.write(src / "nano_text_encoder.pth", "SAT/Nano/nano_text_encoder.pth")
    folder = modelstore.import_model("nano", archive)
    assert (folder / "text_encoder.pth").read_bytes() == (src / "nano_text_encoder.pth").read_bytes()
    _no_leftovers(home)


def test_renamed_files_in_folder_found_by_content(home, tmp_path):
    src = tmp_path / "downloads"
    write_segmentation(src / "sat nano weights (1).pth", "nano", value=3.0)
    write_text_encoder(src / "deep" / "er" / "encoder.pth", value=4.0)
    (src / "notes.pth").write_bytes(b"not a checkpoint")  # ignored, not fatal
    torch.save({"weight": torch.zeros(2)}, src / "other_model.pth")  # a PyTorch file, not SAT: ignored
    folder = modelstore.import_model("nano", src)
    assert _installed_pair(folder) == (3.0, 4.0)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"]["text_encoder.pth"]["source_file"] == str(src / "deep" / "er" / "encoder.pth")
    assert manifest["variant"] == "nano"


def test_renamed_files_in_zip_found_by_content(home, tmp_path):
    src = tmp_path / "src"
    write_segmentation(src / "a.pth", "nano", value=5.0)
    write_text_encoder(src / "b.pth", value=6.0)
    archive = tmp_path / "weights.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(src / "a.pth", "x/model_final.pth")
        z.write(src / "b.pth", "x/te.pth")
        z.writestr("x/readme.pth", b"junk")
        z.writestr("x/README.txt", b"hello")
    folder = modelstore.import_model("nano", archive)
    assert _installed_pair(folder) == (5.0, 6.0)
    assert json.loads((folder / "manifest.json").read_text())["files"]["segmentation.pth"]["source_file"] \
        == f"{archive}:x/model_final.pth"
    assert sorted(p.name for p in folder.iterdir()) == ["fingerprints.json", "manifest.json", "sat_config.json",
                                                         "segmentation.pth", "text_encoder.pth"]
    _no_leftovers(home)


def test_nano_and_pro_side_by_side_picks_requested_variant(home, tmp_path):
    src = tmp_path / "mixed"
    write_segmentation(src / "Nano" / "weights.pth", "nano", value=7.0)
    write_text_encoder(src / "Nano" / "text.pth", value=8.0)
    write_segmentation(src / "Pro" / "weights.pth", "pro", value=9.0)
    write_text_encoder(src / "Pro" / "text.pth", value=10.0)
    folder = modelstore.import_model("nano", src)
    assert _installed_pair(folder) == (7.0, 8.0)  # the text encoder next to the Nano checkpoint
    folder = modelstore.import_model("pro", src)
    assert _installed_pair(folder) == (9.0, 10.0)
    assert json.loads((folder / "sat_config.json").read_text())["variant"] == "pro"


def test_pro_file_imported_as_nano_says_import_as_pro(home, tmp_path):
    src = tmp_path / "only-pro"
    write_segmentation(src / "model.pth", "pro")
    write_text_encoder(src / "text.pth")
    with pytest.raises(ModelError, match="Found SAT-Pro weights in .*model.pth") as info:
        modelstore.import_model("nano", src)
    assert "models import pro" in info.value.hint
    assert modelstore.installed() == []
    _no_leftovers(home)


def test_pro_file_with_nano_name_is_caught_by_validation(home, tmp_path):
    src = tmp_path / "misnamed"
    write_segmentation(src / "nano.pth", "pro")
    write_text_encoder(src / "nano_text_encoder.pth")
    with pytest.raises(ModelError, match="Found SAT-Pro weights in .*nano.pth") as info:
        modelstore.import_model("nano", src)
    assert "models import pro" in info.value.hint
    assert modelstore.installed() == []


def test_two_nano_checkpoints_are_ambiguous(home, tmp_path):
    src = tmp_path / "two"
    write_segmentation(src / "run1.pth", "nano", value=1.0)
    write_segmentation(src / "run2.pth", "nano", value=2.0)
    write_text_encoder(src / "text.pth")
    with pytest.raises(InputError, match="2 SAT-Nano segmentation checkpoints.*run1.pth.*run2.pth"):
        modelstore.import_model("nano", src)
    assert modelstore.installed() == []


def test_two_text_encoders_not_beside_the_checkpoint_are_ambiguous(home, tmp_path):
    src = tmp_path / "texts"
    write_segmentation(src / "seg" / "w.pth", "nano")
    write_text_encoder(src / "t1" / "a.pth")
    write_text_encoder(src / "t2" / "b.pth")
    with pytest.raises(InputError, match="2 SAT text encoders"):
        modelstore.import_model("nano", src)


def test_no_text_encoder_lists_what_was_found(home, tmp_path):
    src = tmp_path / "half"
    write_segmentation(src / "w.pth", "nano")
    (src / "junk.pth").write_bytes(b"")
    write_text_encoder(src / "pretrain.pth", modalities=5)  # SAT-Pretrain encoder: not usable for inference
    with pytest.raises(InputError, match="nano_text_encoder.pth") as info:
        modelstore.import_model("nano", src)
    message = info.value.message
    assert "junk.pth: is empty" in message and "pretrain.pth: unusable text encoder" in message
    assert "w.pth: SAT-Nano segmentation checkpoint" in message


def test_damaged_named_file_fails_at_import(home, tmp_path):
    src = tmp_path / "damaged"
    seg = write_segmentation(src / "nano.pth", "nano")
    write_text_encoder(src / "nano_text_encoder.pth")
    seg.write_bytes(seg.read_bytes()[:-200])  # truncated download
    with pytest.raises(ModelError, match="Cannot import SAT-Nano: .*nano.pth is incomplete") as info:
        modelstore.import_model("nano", src)
    assert ".import-" not in info.value.message  # names the user's file, not the staging copy
    assert modelstore.installed() == []
    _no_leftovers(home)


def test_cli_import_renamed_pair(home, tmp_path, capsys):
    from SATSegmentLib.cli import main

    src = tmp_path / "cli"
    write_segmentation(src / "s.pth", "nano")
    write_text_encoder(src / "t.pth")
    assert main(["models", "import", "nano", str(src)]) == 0
    assert capsys.readouterr().out.strip() == str(modelstore.path_for("nano"))
    modelstore.remove("nano")
    (src / "s.pth").unlink()
    write_segmentation(src / "s.pth", "pro")
    assert main(["models", "import", "nano", str(src)]) == 4
    assert "Import them as `pro`" in capsys.readouterr().err


def test_first_load_after_install_does_not_hash_the_weights_again(home, tmp_path, monkeypatch):
    from SATSegmentLib.model import fingerprint

    src = tmp_path / "SAT" / "Nano"
    write_segmentation(src / "nano.pth", "nano")
    write_text_encoder(src / "nano_text_encoder.pth")
    folder = modelstore.import_model("nano", tmp_path / "SAT")
    manifest = json.loads((folder / "manifest.json").read_text())

    def no_hashing(*args, **kwargs):
        raise AssertionError("the installed weights were hashed again")

    monkeypatch.setattr(fingerprint, "sha256_file", no_hashing)
    for filename in ("segmentation.pth", "text_encoder.pth"):
        assert fingerprint.cached_sha256(folder / filename, folder) == manifest["files"][filename]["sha256"]
