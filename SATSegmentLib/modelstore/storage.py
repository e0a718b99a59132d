"""Writing into the model home safely: one install at a time, files and folders with the permissions
a plain `open`/`mkdir` gives under the user's umask, temp names of our own (so the leftovers of a
killed run are recognised and removed, and nothing else is), and one clear error when the home
cannot be written (full disk, no permission, a file or a symlink loop in the way).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import InputError
from ..userdirs import DISK_FULL, file_mode, folder_mode, unwritable

if os.name == "nt":
    import msvcrt
else:
    import fcntl

TEMP_PREFIX = ".satsegment-tmp-"  # every temp file or folder the model store creates, and nothing else
LOCK_FILE = ".lock"


@contextmanager
def installing(home: Path, partial: Path | None = None) -> Iterator[None]:
    """Hold the model home for one install (download, import, remove).

    Another process installing there makes this fail at once (never wait silently). Temp files of
    ours found now are leftovers of a killed run and are removed. An OSError inside is reported as
    the InputError of `userdirs.unwritable`, after deleting `partial` (an unfinished result).
    """
    try:
        models = home / "models"
        models.mkdir(parents=True, exist_ok=True)
        with _exclusive(models / LOCK_FILE):
            _remove_stale_temp_files(home)
            yield
    except OSError as exc:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        if not _concerns(home, exc):
            raise
        raise unwritable(home, exc) from exc


def _concerns(home: Path, exc: OSError) -> bool:
    """Whether `exc` is about the home, not about a file read elsewhere (reading never fills a disk)."""
    if exc.errno in DISK_FULL or not exc.filename:
        return True
    return Path(os.path.abspath(exc.filename)).is_relative_to(os.path.abspath(home))


def _remove_stale_temp_files(home: Path) -> None:
    """Delete our temp files and folders in the home, `models/` and each model or staging folder
    (only `TEMP_PREFIX` names). Call it holding the lock: then no other run is writing them."""
    models = home / "models"
    folders = [home, models, *(p for p in models.iterdir() if p.is_dir() and not p.is_symlink())]
    for folder in folders:
        for stale in folder.glob(f"{TEMP_PREFIX}*"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()


def temp_folder(parent: Path, label: str) -> Path:
    """A new folder of ours in `parent`, with the permissions of a plain `mkdir` (not mkdtemp's 0o700),
    so that it can be renamed into place as a model folder."""
    folder = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{label}-", dir=parent))
    os.chmod(folder, folder_mode())
    return folder


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: a temp file of ours beside `path`, given a plain `open`'s permissions
    (not mkstemp's 0o600), then one rename."""
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, indent=2) + "\n")
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold the lock on `lock_path` (the system releases it if we are killed)."""
    with open(lock_path, "a+b") as handle:
        if not _try_lock(handle):
            raise InputError(f"Another SATSegment process is installing a model in {lock_path.parent}.",
                             "Wait for that download or import to finish (or stop it), then run the command again.")
        try:
            yield
        finally:
            _unlock(handle)


def _try_lock(handle: BinaryIO) -> bool:
    """Take the lock without waiting; False when another process holds it."""
    try:
        if os.name == "nt":
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


def _unlock(handle: BinaryIO) -> None:
    if os.name == "nt":
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
