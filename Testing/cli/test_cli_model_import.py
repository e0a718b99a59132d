"""`satsegment models import`: finding the two official files by name or, when renamed, by content,
and loading the pair strictly before installing it.

Full-size SAT-Nano/SAT-Pro checkpoints are ~0.5-2 GB, so these tests write *shape-only* copies
(`model.testing.write_shape_only_*`): every key of the official layout with its real shape, each
tensor a stride-0 view of one number (the fill value tells which candidate was installed).
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import pytest
import torch

from SATSegmentLib import modelstore
from SATSegmentLib.errors import InputError, ModelError
from SATSegmentLib.model.checkpoint import segmentation_state
from SATSegmentLib.model.config import SATConfig
from SATSegmentLib.model.testing import write_shape_only_segmentation, write_shape_only_text_encoder
from SATSegmentLib.modelstore.storage import TEMP_PREFIX

NANO, PRO = SATConfig.nano(), SATConfig.pro()


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
    assert not [p for p in models.iterdir() if p.name.startswith(TEMP_PREFIX)] if models.exists() else True


def test_official_names_in_folder_and_zip(home, tmp_path):
    src = tmp_path / "SAT" / "Nano"
    write_shape_only_segmentation(src / "nano.pth", NANO)
    write_shape_only_text_encoder(src / "nano_text_encoder.pth", NANO)
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
    write_shape_only_segmentation(src / "sat nano weights (1).pth", NANO, 3.0)
    write_shape_only_text_encoder(src / "deep" / "er" / "encoder.pth", NANO, 4.0)
    (src / "notes.pth").write_bytes(b"not a checkpoint")  # ignored, not fatal
    torch.save({"weight": torch.zeros(2)}, src / "other_model.pth")  # a PyTorch file, not SAT: ignored
    folder = modelstore.import_model("nano", src)
    assert _installed_pair(folder) == (3.0, 4.0)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"]["text_encoder.pth"]["source_file"] == str(src / "deep" / "er" / "encoder.pth")
    assert manifest["variant"] == "nano"


def test_renamed_files_in_zip_found_by_content(home, tmp_path):
    src = tmp_path / "src"
    write_shape_only_segmentation(src / "a.pth", NANO, 5.0)
    write_shape_only_text_encoder(src / "b.pth", NANO, 6.0)
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
    write_shape_only_segmentation(src / "Nano" / "weights.pth", NANO, 7.0)
    write_shape_only_text_encoder(src / "Nano" / "text.pth", NANO, 8.0)
    write_shape_only_segmentation(src / "Pro" / "weights.pth", PRO, 9.0)
    write_shape_only_text_encoder(src / "Pro" / "text.pth", PRO, 10.0)
    folder = modelstore.import_model("nano", src)
    assert _installed_pair(folder) == (7.0, 8.0)  # the text encoder next to the Nano checkpoint
    folder = modelstore.import_model("pro", src)
    assert _installed_pair(folder) == (9.0, 10.0)
    assert json.loads((folder / "sat_config.json").read_text())["variant"] == "pro"


def test_pro_file_imported_as_nano_says_import_as_pro(home, tmp_path):
    src = tmp_path / "only-pro"
    write_shape_only_segmentation(src / "model.pth", PRO)
    write_shape_only_text_encoder(src / "text.pth", NANO)
    with pytest.raises(ModelError, match="Found SAT-Pro weights in .*model.pth") as info:
        modelstore.import_model("nano", src)
    assert "models import pro" in info.value.hint
    assert modelstore.installed() == []
    _no_leftovers(home)


def test_pro_file_with_nano_name_is_caught_by_validation(home, tmp_path):
    src = tmp_path / "misnamed"
    write_shape_only_segmentation(src / "nano.pth", PRO)
    write_shape_only_text_encoder(src / "nano_text_encoder.pth", NANO)
    with pytest.raises(ModelError, match="Found SAT-Pro weights in .*nano.pth") as info:
        modelstore.import_model("nano", src)
    assert "models import pro" in info.value.hint
    assert modelstore.installed() == []


def test_two_nano_checkpoints_are_ambiguous(home, tmp_path):
    src = tmp_path / "two"
    write_shape_only_segmentation(src / "run1.pth", NANO, 1.0)
    write_shape_only_segmentation(src / "run2.pth", NANO, 2.0)
    write_shape_only_text_encoder(src / "text.pth", NANO)
    with pytest.raises(InputError, match="2 SAT-Nano segmentation checkpoints.*run1.pth.*run2.pth"):
        modelstore.import_model("nano", src)
    assert modelstore.installed() == []


def test_two_text_encoders_not_beside_the_checkpoint_are_ambiguous(home, tmp_path):
    src = tmp_path / "texts"
    write_shape_only_segmentation(src / "seg" / "w.pth", NANO)
    write_shape_only_text_encoder(src / "t1" / "a.pth", NANO)
    write_shape_only_text_encoder(src / "t2" / "b.pth", NANO)
    with pytest.raises(InputError, match="2 SAT text encoders"):
        modelstore.import_model("nano", src)


def test_no_text_encoder_lists_what_was_found(home, tmp_path):
    src = tmp_path / "half"
    write_shape_only_segmentation(src / "w.pth", NANO)
    (src / "junk.pth").write_bytes(b"")
    pretrain = dataclasses.replace(NANO, num_modalities=5)  # a SAT-Pretrain encoder: not usable for inference
    write_shape_only_text_encoder(src / "pretrain.pth", pretrain)
    with pytest.raises(InputError, match="nano_text_encoder.pth") as info:
        modelstore.import_model("nano", src)
    message = info.value.message
    assert "junk.pth: is empty" in message and "pretrain.pth: unusable text encoder" in message
    assert "w.pth: SAT-Nano segmentation checkpoint" in message


def test_damaged_named_file_fails_at_import(home, tmp_path):
    src = tmp_path / "damaged"
    seg = write_shape_only_segmentation(src / "nano.pth", NANO)
    write_shape_only_text_encoder(src / "nano_text_encoder.pth", NANO)
    seg.write_bytes(seg.read_bytes()[:-200])  # truncated download
    with pytest.raises(ModelError, match="Cannot import SAT-Nano: .*nano.pth is incomplete") as info:
        modelstore.import_model("nano", src)
    assert TEMP_PREFIX not in info.value.message  # names the user's file, not the staging copy
    assert modelstore.installed() == []
    _no_leftovers(home)


def _zipped_pair(tmp_path: Path) -> Path:
    """The official pair in a .zip, stored uncompressed (so damaging a byte damages the data, not zlib's stream)."""
    src = tmp_path / "zip-src"
    members = {"Nano/nano.pth": write_shape_only_segmentation(src / "nano.pth", NANO),
               "Nano/nano_text_encoder.pth": write_shape_only_text_encoder(src / "nano_text_encoder.pth", NANO)}
    archive = tmp_path / "SAT.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for member, path in members.items():
            z.write(path, member)
    return archive


def test_truncated_zip_says_to_copy_it_again(home, tmp_path):
    archive = _zipped_pair(tmp_path)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(InputError, match=r"SAT.zip is a damaged or truncated \.zip file") as info:
        modelstore.import_model("nano", archive)
    assert "copy the .zip file again" in info.value.hint
    assert modelstore.installed() == []
    _no_leftovers(home)


def test_zip_with_a_damaged_member_says_to_copy_it_again(home, tmp_path):
    archive = _zipped_pair(tmp_path)
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the first member's data: its CRC no longer matches
    archive.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"damaged or truncated \.zip file \(Bad CRC-32"):
        modelstore.import_model("nano", archive)
    assert modelstore.installed() == []
    _no_leftovers(home)


def test_cli_import_renamed_pair(home, tmp_path, capsys):
    from SATSegmentLib.cli import main

    src = tmp_path / "cli"
    write_shape_only_segmentation(src / "s.pth", NANO)
    write_shape_only_text_encoder(src / "t.pth", NANO)
    assert main(["models", "import", "nano", str(src)]) == 0
    assert capsys.readouterr().out.strip() == str(modelstore.path_for("nano"))
    modelstore.remove("nano")
    (src / "s.pth").unlink()
    write_shape_only_segmentation(src / "s.pth", PRO)
    assert main(["models", "import", "nano", str(src)]) == 4
    assert "Import them as `pro`" in capsys.readouterr().err


def test_first_load_after_install_does_not_hash_the_weights_again(home, tmp_path, monkeypatch):
    from SATSegmentLib.model import fingerprint

    src = tmp_path / "SAT" / "Nano"
    write_shape_only_segmentation(src / "nano.pth", NANO)
    write_shape_only_text_encoder(src / "nano_text_encoder.pth", NANO)
    folder = modelstore.import_model("nano", tmp_path / "SAT")
    manifest = json.loads((folder / "manifest.json").read_text())

    def no_hashing(*args, **kwargs):
        raise AssertionError("the installed weights were hashed again")

    monkeypatch.setattr(fingerprint, "sha256_file", no_hashing)
    for filename in ("segmentation.pth", "text_encoder.pth"):
        assert fingerprint.cached_sha256(folder / filename, folder) == manifest["files"][filename]["sha256"]
