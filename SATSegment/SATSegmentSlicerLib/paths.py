"""Where the module's files are, in a source checkout and in an installed extension.

Installed, Slicer copies `SATSegment.py`, `SATSegmentLib/` and `Resources/` into one folder
(`qt-scripted-modules`). In a source checkout they are one level apart: `SATSegment/SATSegment.py`
next to the top-level `SATSegmentLib/` and `Resources/`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]


def libraryRoot() -> Path:
    """The folder that contains the `SATSegmentLib` package (put on sys.path and PYTHONPATH)."""
    for candidate in (MODULE_DIR, MODULE_DIR.parent):
        if (candidate / "SATSegmentLib" / "__init__.py").is_file():
            return candidate
    raise FileNotFoundError(f"SATSegmentLib was not found next to {MODULE_DIR} or in its parent folder")


def resourcesDir() -> Path:
    """The folder holding `UI/`, `Icons/` and the other resources."""
    for candidate in (MODULE_DIR / "Resources", MODULE_DIR.parent / "Resources"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"Resources folder not found next to {MODULE_DIR}")


def ensureLibraryImportable() -> None:
    """Make `import SATSegmentLib` work in this process (source checkout or installed extension)."""
    root = str(libraryRoot())
    if root not in sys.path:
        sys.path.insert(0, root)


def pythonExecutable() -> str:
    """Python to run the worker with: Slicer's `PythonSlicer` launcher when present, else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def workerEnvironment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for child Pythons: ours, with `SATSegmentLib` and `SATSegmentSlicerLib` importable."""
    env = dict(os.environ if base is None else base)
    parts = [str(libraryRoot()), str(MODULE_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONIOENCODING"] = "utf-8"  # the pipes' encoding, whatever the platform's code page (WorkerClient decodes UTF-8)
    return env


def workerCommand(*arguments: str) -> list[str]:
    """Command line that runs `python -m SATSegmentLib <arguments>` with the Slicer Python."""
    return [pythonExecutable(), "-m", "SATSegmentLib", *arguments]
