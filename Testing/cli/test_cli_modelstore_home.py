"""The model home (SATSEGMENT_HOME): an unusable one fails with one clear message and exit 2, a
non-ASCII one simply works, installed models are as readable as the umask says, and one install
runs at a time. (Full disk and read-only home: test_cli_modelstore.py, which has the fake hub.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from SATSegmentLib import modelstore
from SATSegmentLib.cli import main
from SATSegmentLib.errors import InputError
from SATSegmentLib.model.config import SATConfig
from SATSegmentLib.model.testing import write_shape_only_segmentation, write_shape_only_text_encoder
from SATSegmentLib.modelstore.storage import installing

NON_ASCII = "Ünïcødé 肝臓"


def _official_pair(folder: Path) -> Path:
    write_shape_only_segmentation(folder / "nano.pth", SATConfig.nano())
    write_shape_only_text_encoder(folder / "nano_text_encoder.pth", SATConfig.nano())
    return folder


def _import_via_cli(capsys, source: Path) -> tuple[int, str]:
    """Exit status and stderr of `satsegment models import nano SOURCE`."""
    status = main(["models", "import", "nano", str(source)])
    return status, capsys.readouterr().err


def test_home_that_is_a_file_is_a_clear_input_error(monkeypatch, tmp_path, capsys):
    home = tmp_path / "home"
    home.write_text("notes")
    monkeypatch.setenv("SATSEGMENT_HOME", str(home))
    status, err = _import_via_cli(capsys, tmp_path)
    assert status == 2
    assert f"error: {home} is a file, not a folder." in err
    assert "hint: " in err and "SATSEGMENT_HOME" in err
    assert "Traceback" not in err
    assert home.read_text() == "notes"


@pytest.mark.parametrize("inside", ["", "models"], ids=["home", "home/models"])
def test_symlink_loop_in_home_is_a_clear_input_error(monkeypatch, tmp_path, capsys, inside):
    home = tmp_path / "home"
    loop = home / inside
    loop.parent.mkdir(exist_ok=True)
    loop.symlink_to(loop)
    monkeypatch.setenv("SATSEGMENT_HOME", str(home))
    status, err = _import_via_cli(capsys, tmp_path)
    assert status == 2
    assert f"{loop} is a symbolic link loop." in err
    assert "Traceback" not in err


def test_import_into_a_non_ascii_home_from_a_non_ascii_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("SATSEGMENT_HOME", str(tmp_path / NON_ASCII / "home"))
    folder = modelstore.import_model("nano", _official_pair(tmp_path / NON_ASCII / "Nano"))
    assert folder == tmp_path / NON_ASCII / "home" / "models" / "nano"
    assert modelstore.path_for("nano") == folder
    assert set(modelstore.verify("nano")) == {"segmentation.pth", "text_encoder.pth"}


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request) -> int:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_installed_model_has_the_permissions_the_umask_gives(monkeypatch, tmp_path, umask):
    monkeypatch.setenv("SATSEGMENT_HOME", str(tmp_path / "home"))
    folder = modelstore.import_model("nano", _official_pair(tmp_path / "Nano"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}
    assert set(modes) >= {"segmentation.pth", "text_encoder.pth", "sat_config.json", "manifest.json", "fingerprints.json"}
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)


def test_second_install_at_the_same_time_fails_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("SATSEGMENT_HOME", str(tmp_path / "home"))
    source = _official_pair(tmp_path / "Nano")
    with installing(modelstore.model_home()):
        with pytest.raises(InputError, match="Another SATSegment process is installing"):
            modelstore.import_model("nano", source)
    assert modelstore.installed() == []
