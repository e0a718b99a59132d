"""Model download, verification, import and removal against a local HTTP server on 127.0.0.1; a full
or read-only model home (small tmpfs mounts: root only, skipped otherwise)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

from SATSegmentLib import modelstore
from SATSegmentLib.errors import CancelledError, DownloadError, InputError, ModelError
from SATSegmentLib.model.config import SATConfig
from SATSegmentLib.model.testing import write_shape_only_segmentation, write_shape_only_text_encoder
from SATSegmentLib.modelstore.storage import TEMP_PREFIX



class HubFiles(NamedTuple):
    """What the fake hub serves as Nano/nano.pth and Nano/nano_text_encoder.pth."""

    seg: bytes
    text: bytes


@pytest.fixture(scope="session")
def hub_files(tmp_path_factory) -> HubFiles:
    """A shape-only official SAT-Nano pair: loads strictly like the real files, ~100 kB."""
    folder = tmp_path_factory.mktemp("hub-files")
    seg = write_shape_only_segmentation(folder / "nano.pth", SATConfig.nano())
    text = write_shape_only_text_encoder(folder / "nano_text_encoder.pth", SATConfig.nano())
    return HubFiles(seg.read_bytes(), text.read_bytes())


class FakeHub(http.server.ThreadingHTTPServer):
    """Serves files like huggingface.co/<repo>/resolve/main: Range support, LFS SHA-256 header,
    and switchable faults (cut connection, corrupt bytes, stall)."""

    daemon_threads = True

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: int | None = None  # close the next response after this many bytes
        self.corrupt = False
        self.stall_seconds = 0.0
        self.publish_sha = True

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _HubHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        hub: FakeHub = self.server
        hub.requests.append((self.path, self.headers.get("Range")))
        data = hub.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
        body = data[start:]
        if hub.corrupt:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        if hub.publish_sha:
            self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.end_headers()
        if hub.stall_seconds:
            time.sleep(hub.stall_seconds)
        if hub.cut_after is not None:
            self.wfile.write(body[: hub.cut_after])
            hub.cut_after = None
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def hub(monkeypatch, tmp_path, hub_files):
    server = FakeHub({"/Nano/nano.pth": hub_files.seg, "/Nano/nano_text_encoder.pth": hub_files.text})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("SATSEGMENT_MODEL_URL_BASE", server.base)
    monkeypatch.setenv("SATSEGMENT_HOME", str(tmp_path / "home"))
    yield server
    server.shutdown()
    server.server_close()


def test_download_installs_verified_model_with_progress(hub, hub_files):
    seen = []
    folder = modelstore.download("nano", progress=lambda stage, cur, tot, msg: seen.append((stage, cur, tot)))
    assert (folder / "segmentation.pth").read_bytes() == hub_files.seg
    assert (folder / "text_encoder.pth").read_bytes() == hub_files.text
    assert json.loads((folder / "sat_config.json").read_text())["variant"] == "nano"
    assert modelstore.installed() == ["nano"]
    assert modelstore.path_for("nano") == folder
    assert seen[-1] == ("download", len(hub_files.text), len(hub_files.text))
    assert modelstore.verify("nano")["segmentation.pth"] == hashlib.sha256(hub_files.seg).hexdigest()
    recorded = json.loads((modelstore.model_home() / "checksums.json").read_text())
    assert recorded["Nano/nano.pth"] == hashlib.sha256(hub_files.seg).hexdigest()
    assert not list(folder.glob("*.part"))


def test_resume_after_cut_connection_uses_range(hub, hub_files):
    hub.cut_after = 1000
    folder = modelstore.download("nano")
    assert (folder / "segmentation.pth").read_bytes() == hub_files.seg
    assert ("/Nano/nano.pth", "bytes=1000-") in hub.requests


def test_corrupt_bytes_leave_nothing_installed(hub):
    hub.corrupt = True
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        modelstore.download("nano")
    assert modelstore.installed() == []
    home = modelstore.model_home()
    assert not [p for p in home.rglob("*") if p.suffix in (".pth", ".part")]


def test_pinned_checksum_wins_over_published(hub, monkeypatch):
    spec = modelstore.registry()["nano"]["files"]["segmentation.pth"]
    monkeypatch.setitem(spec, "sha256", "0" * 64)
    with pytest.raises(DownloadError, match="0000000000"):
        modelstore.download("nano")


def test_missing_published_checksum_is_refused(hub):
    hub.publish_sha = False
    with pytest.raises(DownloadError, match="no SHA-256"):
        modelstore.download("nano")
    assert modelstore.installed() == []


def test_404_names_the_registry(hub):
    del hub.files["/Nano/nano_text_encoder.pth"]
    with pytest.raises(DownloadError, match="404") as info:
        modelstore.download("nano")
    assert "registry.json" in info.value.hint
    assert modelstore.installed() == []


def test_timeout_is_a_download_error(hub):
    hub.stall_seconds = 2.0
    with pytest.raises(DownloadError, match="failed after"):
        modelstore.download("nano", timeout=0.3)


def test_cancel_keeps_part_for_resume(hub, hub_files):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        modelstore.download("nano", cancel=cancel)
    assert modelstore.installed() == []
    folder = modelstore.download("nano")
    assert (folder / "segmentation.pth").read_bytes() == hub_files.seg


def test_downloaded_files_that_do_not_load_are_not_installed(hub, hub_files):
    hub.files = {"/Nano/nano.pth": hub_files.text, "/Nano/nano_text_encoder.pth": hub_files.seg}  # swapped on the hub
    with pytest.raises(ModelError, match=r"Cannot download SAT-Nano: .*/Nano/nano.pth is a SAT text-encoder") as info:
        modelstore.download("nano")
    assert "registry.json" in info.value.hint
    assert modelstore.installed() == []
    assert not (modelstore.model_home() / "models" / ".staging-nano").exists()


def test_verify_detects_corruption_and_remove(hub):
    folder = modelstore.download("nano")
    with open(folder / "text_encoder.pth", "r+b") as f:
        f.write(b"X")
    with pytest.raises(ModelError, match="corrupt") as info:
        modelstore.verify("nano")
    assert "models remove nano" in info.value.hint
    assert modelstore.remove("nano") is True
    assert modelstore.installed() == []
    with pytest.raises(ModelError, match="not installed") as info:
        modelstore.path_for("nano")
    assert "satsegment models download nano" in info.value.hint


def _official_folder(tmp_path: Path, hub_files: HubFiles) -> Path:
    folder = tmp_path / "offline" / "Nano"
    folder.mkdir(parents=True)
    (folder / "nano.pth").write_bytes(hub_files.seg)
    (folder / "nano_text_encoder.pth").write_bytes(hub_files.text)
    return folder


def test_import_checks_recorded_hub_checksum(hub, tmp_path, hub_files):
    modelstore.download("nano")
    modelstore.remove("nano")
    folder = _official_folder(tmp_path, hub_files)
    (folder / "nano.pth").write_bytes(hub_files.seg[:-1] + b"!")
    with pytest.raises(ModelError, match="official file"):
        modelstore.import_model("nano", folder)
    assert modelstore.installed() == []


def test_import_rejects_incomplete_folder(hub, tmp_path, hub_files):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "nano.pth").write_bytes(hub_files.seg)
    with pytest.raises(InputError, match="nano_text_encoder.pth"):
        modelstore.import_model("nano", folder)
    assert modelstore.installed() == []


def test_unknown_model_name():
    with pytest.raises(InputError, match="Unknown model name"):
        modelstore.path_for("mega")


def test_registry_has_both_official_models():
    reg = modelstore.registry()
    assert reg["nano"]["files"]["segmentation.pth"]["path"] == "Nano/nano.pth"
    assert reg["pro"]["files"]["segmentation.pth"]["path"] == "Pro/SAT_Pro.pth"
    assert reg["pro"]["files"]["text_encoder.pth"]["path"] == "Pro/text_encoder.pth"
    assert "no licence" in modelstore.licence_note()


def test_models_subcommands(hub, tmp_path, capsys):
    from SATSegmentLib.cli import main

    assert main(["models", "download", "nano"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(modelstore.path_for("nano")) and "no licence" in err
    assert main(["models", "verify", "nano"]) == 0
    assert capsys.readouterr().out.count("ok  ") == 2
    assert main(["models", "list"]) == 0
    assert "nano   SAT-Nano  installed" in capsys.readouterr().out
    assert main(["models", "path"]) == 0 and capsys.readouterr().out.strip() == str(modelstore.model_home())
    assert main(["models", "remove", "nano"]) == 0 and "removed nano" in capsys.readouterr().out
    assert main(["models", "path", "nano"]) == 4
    del hub.files["/Nano/nano.pth"]
    assert main(["models", "download", "nano"]) == 6
    assert "404" in capsys.readouterr().err
    assert main(["models", "import", "nano", str(tmp_path / "nothing")]) == 2


def test_download_removes_stale_temp_files_of_ours_only(hub):
    home = modelstore.model_home()
    staging = home / "models" / ".staging-nano"
    staging.mkdir(parents=True)
    ours = [home / f"{TEMP_PREFIX}checksums.json-x1", home / "models" / f"{TEMP_PREFIX}import-nano-x2" / "nano.pth",
            staging / f"{TEMP_PREFIX}manifest.json-x3"]  # what killed runs leave
    users = [home / "models" / "notes.tmp", home / ".satsegment-notes", home / "models" / "nano.tmp.pth"]
    for path in ours + users:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    folder = modelstore.download("nano")
    assert [p for p in ours if p.exists()] == [] and not (home / "models" / f"{TEMP_PREFIX}import-nano-x2").exists()
    assert [p for p in users if not p.exists()] == []
    assert not [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]


@contextmanager
def _tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A small tmpfs mounted on `folder` for the test (root only; the test is skipped otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                             text=True) if shutil.which("mount") and os.geteuid() == 0 else None
    if mounted is None or mounted.returncode:
        pytest.skip(f"needs `mount -t tmpfs` as root: {mounted.stderr.strip() if mounted else 'not root'}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def full_home(monkeypatch, tmp_path) -> Iterator[Path]:
    """SATSEGMENT_HOME on a 64 kB disk: the model files (~150 kB) do not fit."""
    with _tmpfs(tmp_path / "small-disk", "size=64k") as disk:
        monkeypatch.setenv("SATSEGMENT_HOME", str(disk / "home"))
        yield disk / "home"


def test_download_to_a_full_disk_is_a_clear_error_and_leaves_nothing(hub, full_home, capsys):
    from SATSegmentLib.cli import main

    assert main(["models", "download", "nano"]) == 2
    err = capsys.readouterr().err
    assert f"error: The disk holding {full_home} is full." in err and "Free some space" in err
    assert "Traceback" not in err
    assert [p.name for p in (full_home / "models").iterdir()] == [".lock"]


def test_import_to_a_full_disk_is_a_clear_error_and_leaves_nothing(hub, hub_files, full_home, tmp_path):
    with pytest.raises(InputError, match="is full"):
        modelstore.import_model("nano", _official_folder(tmp_path, hub_files))
    assert [p.name for p in (full_home / "models").iterdir()] == [".lock"]


@pytest.fixture
def read_only_home(monkeypatch, tmp_path) -> Iterator[Path]:
    """SATSEGMENT_HOME in a folder that cannot be written: mode 555, or for root (whom modes do not
    stop) a read-only tmpfs."""
    folder = tmp_path / "read-only"
    monkeypatch.setenv("SATSEGMENT_HOME", str(folder / "home"))
    if os.geteuid() == 0:
        with _tmpfs(folder, "ro,size=64k"):
            yield folder / "home"
        return
    folder.mkdir()
    folder.chmod(0o555)
    yield folder / "home"
    folder.chmod(0o755)


def test_read_only_home_is_a_clear_error(hub, read_only_home, capsys):
    from SATSegmentLib.cli import main

    assert main(["models", "download", "nano"]) == 2
    err = capsys.readouterr().err
    assert f"error: Cannot write to {read_only_home}: " in err and "SATSEGMENT_HOME" in err
    assert "Traceback" not in err
