"""Fixtures for the Slicer module's tests: a real MRML scene (slicer-core) holding the real sample CT."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import sys
import threading
import time
import traceback
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "SATSegment"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))  # SATSegmentSlicerLib, as Slicer puts the module folder on sys.path


@pytest.fixture(scope="session")
def segmentation_converters():
    """Register the labelmap/surface conversion rules, as Slicer's Segmentations module does at startup."""
    slicer = pytest.importorskip("slicer", reason="the slicer-core wheel provides Slicer's MRML layer")
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if not factory.GetConverterRules():
        for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule, slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
            factory.RegisterConverterRule(rule())
    return factory


@pytest.fixture
def scene(segmentation_converters):
    import slicer

    return slicer.vtkMRMLScene()


@pytest.fixture
def ct_path(examples_dir: Path) -> Path:
    return examples_dir / "example_ct_sm.nii.gz"


def _readVolume(scene, path: Path, name: str):
    """A scalar volume node of `scene` read from `path` by Slicer's own volume storage node."""
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(volume), f"Slicer could not read {path}"
    volume.SetAndObserveStorageNodeID(storage.GetID())
    return volume


@pytest.fixture
def ct_volume(scene, ct_path):
    """The real CT as a scalar volume node."""
    return _readVolume(scene, ct_path, "CT")


def _loadBlock(scene, ct_path: Path, folder: Path):
    """A 40x40x30-voxel block of the real CT (its own origin), read by Slicer's storage node into `scene`:
    small enough for quick CPU runs of the real worker (the whole sample takes minutes on a busy CI machine)."""
    import SimpleITK as sitk

    cropped = folder / "ct_block.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(ct_path))[40:80, 30:70, :], str(cropped))
    return _readVolume(scene, cropped, "CT block")


@pytest.fixture
def small_ct(scene, ct_path, tmp_path):
    """The CT block in the test's own MRML scene (no application)."""
    return _loadBlock(scene, ct_path, tmp_path)


# -- the widget under Qt (PySide6): see qtharness/ --------------------------------------------------

HARNESS_DIR = Path(__file__).resolve().parent
if str(HARNESS_DIR) not in sys.path:
    sys.path.insert(0, str(HARNESS_DIR))  # the qtharness package
SAMPLE_CT = REPO / "Resources" / "Samples" / "example_ct_sm.nii.gz"
DEVICES_NONE = '{"event": "devices", "cuda": false, "gpus": [], "torch": "stand-in"}'


@pytest.fixture(scope="session")
def qapp():
    """One QApplication for the session, offscreen unless QT_QPA_PLATFORM says otherwise (e.g. xcb under Xvfb)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["SATSegment-tests"])
    app.setStyle("Fusion")  # the same look on every machine
    return app


@pytest.fixture
def slot_errors(monkeypatch):
    """Exceptions raised in Qt slots (Slicer prints them to its console); a test that expects one removes it."""
    errors: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: errors.append(value))
    yield errors
    assert not errors, "exceptions escaped from Qt slots:\n" + "".join(
        "".join(traceback.format_exception(error)) for error in errors)


@pytest.fixture
def user(monkeypatch):
    """The person in front of the panel: answers dialogs in the order a test queues them."""
    from qtharness import ctkwidgets
    from qtharness.panel import ScriptedUser

    scripted = ScriptedUser()
    monkeypatch.setattr(ctkwidgets.ctkMessageBox, "answerer", scripted)
    yield scripted
    assert not scripted.answers, f"the module never asked what these answers were for: {list(scripted.answers)}"


@pytest.fixture
def slicer_env(qapp, segmentation_converters, tmp_path, monkeypatch, isolated_model_home):
    """Slicer's application layer (app, main window, scene, modules) around the slicer-core MRML layer."""
    from qtharness.panel import installSlicer

    temporary = tmp_path / "slicer-temp"
    temporary.mkdir()
    return installSlicer(str(temporary), monkeypatch)


@pytest.fixture
def satsegment(slicer_env, monkeypatch, request):
    """SATSegment.py, loaded as Slicer loads a scripted module (its line coverage is measured from here on)."""
    from qtharness.panel import loadModule

    _WidgetCoverage.of(request.config).start()
    return loadModule(monkeypatch)


# -- line coverage of SATSegment.py: reported after every run, enforced when every slicer test ran ---------

WIDGET_FILE = REPO / "SATSegment" / "SATSegment.py"
WIDGET_FILES = [WIDGET_FILE, *sorted((REPO / "SATSegment" / "SATSegmentWidgets").glob("*.py"))]
MINIMUM_WIDGET_COVERAGE = 85.0


class _WidgetCoverage:
    """coverage.py limited to SATSegment.py and its widget parts, started when a test first loads the module."""

    def __init__(self) -> None:
        import coverage

        self.coverage = coverage.Coverage(include=[str(path) for path in WIDGET_FILES], data_file=None)
        self.started = self.partial = self.failed = False
        self.result: tuple[float, list[int]] | None = None

    @classmethod
    def of(cls, config) -> "_WidgetCoverage":
        if not hasattr(config, "_satsegmentWidgetCoverage"):
            config._satsegmentWidgetCoverage = cls()
        return config._satsegmentWidgetCoverage

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.coverage.start()

    def finish(self) -> None:
        if self.started:
            self.coverage.stop()
            counts, missed = [0, 0], {}
            for path in WIDGET_FILES:
                _, statements, _, missing, _ = self.coverage.analysis2(str(path))
                counts[0] += len(statements)
                counts[1] += len(missing)
                missed[path.name] = missing
            self.result = 100.0 * (counts[0] - counts[1]) / counts[0], missed


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """The minimum applies only when every test file of this folder was collected."""
    collected = {Path(str(item.fspath)).name for item in items if Path(str(item.fspath)).parent == HARNESS_DIR}
    if collected != {path.name for path in HARNESS_DIR.glob("test_*.py")}:
        _WidgetCoverage.of(config).partial = True


def pytest_deselected(items):
    if any(Path(str(item.fspath)).parent == HARNESS_DIR for item in items):
        config = items[0].config
        _WidgetCoverage.of(config).partial = True


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    measured = _WidgetCoverage.of(session.config)
    measured.finish()
    if measured.result is None:
        return
    complete = not (measured.partial or session.shouldstop or session.shouldfail or session.config.option.keyword
                    or session.config.option.markexpr or session.config.option.lf)
    if complete and measured.result[0] < MINIMUM_WIDGET_COVERAGE and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        measured.failed = True


def _ranges(lines: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    spans: list[list[int]] = []
    for line in sorted(lines):
        if spans and line == spans[-1][1] + 1:
            spans[-1][1] = line
        else:
            spans.append([line, line])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans) or "none"


def pytest_terminal_summary(terminalreporter, config):
    measured = _WidgetCoverage.of(config)
    if measured.result is None:
        return
    percent, missed = measured.result
    terminalreporter.write_sep("-", "SATSegment.py and SATSegmentWidgets line coverage")
    terminalreporter.write_line(f"{percent:.1f}% of their lines ran (minimum {MINIMUM_WIDGET_COVERAGE:.0f}% when every "
                                "slicer test runs); lines not run:")
    for name, missing in missed.items():
        terminalreporter.write_line(f"  {name}: {_ranges(missing)}")
    if measured.failed:
        terminalreporter.write_line(f"FAILED: the widget's coverage is below {MINIMUM_WIDGET_COVERAGE:.0f}%", red=True)


@pytest.fixture
def logic(satsegment):
    """The module's logic, with a device probe that answers 'no GPU' at once (the real probe imports torch;
    test_slicer_widget_setup runs it once)."""
    logic = satsegment.SATSegmentLogic()
    logic.devices.command = [sys.executable, "-c", f"print({DEVICES_NONE!r})"]
    return logic


@pytest.fixture
def panel(slicer_env, satsegment, logic, user, slot_errors, tmp_path):
    """The SATSegment panel, set up and entered, in the module panel of a 1366-pixel-wide main window."""
    from qtharness.panel import openPanel, screenshotDirs

    opened = openPanel(slicer_env, satsegment, user, screenshotDirs(tmp_path), slot_errors, logic=logic)
    opened.waitUntil(lambda: not logic.devices.busy, 30, "the device probe's answer")
    yield opened
    opened.close()


@pytest.fixture
def ct_block(slicer_env, tmp_path):
    """The CT block, loaded into the application's scene."""
    volume = _loadBlock(slicer_env.scene, SAMPLE_CT, tmp_path)
    volume.CreateDefaultDisplayNodes()
    return volume


@pytest.fixture
def installed_nano(isolated_model_home, tiny_model_dir):
    """A tiny random-weight model installed under SAT-Nano's name in the isolated model cache, so the panel
    sees SAT-Nano as installed and the real worker runs it quickly."""
    import shutil

    folder = isolated_model_home / "models" / "nano"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "manifest.json").write_text('{"files": {}}', encoding="utf-8")
    return folder


class _HubHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with the SHA-256 in `X-Linked-Etag`, as the official hub publishes it; under /slow/ the
    same files trickle out (64 KB every 0.2 s), so a download is still running when a test cancels it."""

    def end_headers(self):
        path = self.translate_path(self.path.removeprefix("/slow"))
        try:
            with open(path, "rb") as f:
                self.send_header("X-Linked-Etag", hashlib.sha256(f.read()).hexdigest())
        except OSError:
            pass
        super().end_headers()

    def do_GET(self):
        if not self.path.startswith("/slow/"):
            return super().do_GET()
        path = self.translate_path(self.path.removeprefix("/slow"))
        try:
            data = open(path, "rb").read()
        except OSError:
            return self.send_error(404)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for start in range(0, len(data), 65536):
            try:
                self.wfile.write(data[start:start + 65536])
            except OSError:
                return
            time.sleep(0.2)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def official_nano_files(tmp_path_factory) -> Path:
    """SAT-Nano's two official files at the registry's paths, with the right shapes and zero weights."""
    from SATSegmentLib import modelstore
    from SATSegmentLib.model.config import SATConfig
    from SATSegmentLib.model.testing import write_shape_only_segmentation, write_shape_only_text_encoder

    root = tmp_path_factory.mktemp("hub")
    files = modelstore.registry()["nano"]["files"]
    write_shape_only_segmentation(root / files["segmentation.pth"]["path"], SATConfig.nano())
    write_shape_only_text_encoder(root / files["text_encoder.pth"]["path"], SATConfig.nano())
    return root


@pytest.fixture
def hub(official_nano_files):
    """The official repository's files for SAT-Nano, served on 127.0.0.1 (`.url`)."""
    handler = functools.partial(_HubHandler, directory=str(official_nano_files))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield types.SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()


@pytest.fixture(scope="session")
def label_server(tmp_path_factory, tiny_model_dir):
    """A real SATSegment MONAI Label server on 127.0.0.1 serving the tiny model as 'tiny' (uploads only)."""
    from SATSegmentLib.labelserver.testing import LabelServer, ServerStartError, server_python

    python = server_python()
    if python is None:
        pytest.fail("MONAI Label is not installed: run `bash .ci/server-env`, or point SATSEGMENT_SERVER_PYTHON at a "
                    "Python with `pip install 'satsegmentlib[server]'`.")
    root = tmp_path_factory.mktemp("label-server")
    (root / "studies").mkdir()
    try:
        server = LabelServer(python, root, root / "studies", f"tiny={tiny_model_dir}")
    except ServerStartError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
def silent_server():
    """The URL of a server that accepts every connection and never answers (a hung or overloaded server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:  # the clients still waiting get a closed connection and end
        connection.close()
    listener.close()
