"""Where SATSegment keeps per-user data (models, caches): one answer for the whole package, the
permissions new files there get, and the one error when that folder cannot be written."""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

from .errors import InputError

HOME_VARIABLE = "SATSEGMENT_HOME"
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))  # errno values of a full disk or quota


def user_home() -> Path:
    """`SATSEGMENT_HOME`, else the platform's per-user cache folder + `satsegment`."""
    if os.environ.get(HOME_VARIABLE):
        return Path(os.environ[HOME_VARIABLE]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "satsegment"


def file_mode() -> int:
    """Permissions of a new file as a plain `open()` makes it under the umask (0o644 with umask 022).

    `tempfile` creates private (0o600) files and folders; what we rename into place gets these
    instead, so that colleagues (or Slicer run by another user) can read a shared model folder.
    """
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """Permissions of a new folder as a plain `mkdir` makes it under the umask (0o755 with umask 022)."""
    return 0o777 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o077)  # the only portable way to read it; a file created meanwhile is private, not open
    os.umask(mask)
    return mask


def unwritable(folder: Path, exc: OSError) -> InputError:
    """The error for `exc`, raised while writing under the per-user `folder`: what is wrong there,
    and what to do about it (free space, another folder, fix a path that is in the way)."""
    setting = f"set {HOME_VARIABLE} to "
    if exc.errno in DISK_FULL:
        return InputError(f"The disk holding {folder} is full.",
                          f"Free some space there, or {setting}a folder on a disk with more space; then run the command again.")
    blocker = _blocking_part(exc, folder)
    if blocker is not None:
        path, problem = blocker
        where = "" if path == folder else f"Cannot use {folder}: "
        return InputError(f"{where}{path} {problem}.", f"Remove or fix {path}, or {setting}a folder (it is created if missing).")
    return InputError(f"Cannot write to {folder}: {exc.strerror or exc}.",
                      f"Get write permission there, or {setting}a folder you can write to.")


def _blocking_part(exc: OSError, folder: Path) -> tuple[Path, str] | None:
    """The first component on the failed path that exists but cannot hold files: a file, or a symlink
    loop. The failed path itself counts only when that was the complaint (EEXIST, ELOOP): a file we
    could not write is not in the way of itself."""
    path = Path(exc.filename) if exc.filename else folder
    parts = [*reversed(path.parents)]
    if not exc.filename or exc.errno in (errno.EEXIST, errno.ELOOP):
        parts.append(path)
    for part in parts:
        try:
            mode = part.stat().st_mode
        except FileNotFoundError:
            return None
        except OSError as error:
            return (part, "is a symbolic link loop") if error.errno == errno.ELOOP else None
        if not stat.S_ISDIR(mode):
            return part, "is a file, not a folder"
    return None
