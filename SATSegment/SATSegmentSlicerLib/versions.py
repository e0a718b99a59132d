"""Which Slicer the module can run in.

SATSegmentLib needs Python 3.10 or later. Slicer 5.8 ships Python 3.9; Slicer 5.10 is the first release
with a newer Python (3.12), so 5.10 is the minimum (also declared in the README and the extension's CMake).
"""

from __future__ import annotations

import sys

MINIMUM_PYTHON = (3, 10)
MINIMUM_SLICER = "5.10"


def runningPython() -> tuple[int, int, int]:
    return tuple(sys.version_info[:3])


def pythonSupported() -> bool:
    return runningPython() >= MINIMUM_PYTHON


def pythonText() -> str:
    return ".".join(str(part) for part in runningPython())
