"""Where SATSegment keeps per-user data (models, caches): one answer for the whole package."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def user_home() -> Path:
    """`SATSEGMENT_HOME`, else the platform's per-user cache folder + `satsegment`."""
    if os.environ.get("SATSEGMENT_HOME"):
        return Path(os.environ["SATSEGMENT_HOME"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "satsegment"
