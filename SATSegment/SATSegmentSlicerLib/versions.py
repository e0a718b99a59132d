"""Which Slicer the module can run in.

SATSegmentLib needs Python 3.10 or later. Slicer 5.8 ships Python 3.9.10 and Slicer 5.10 ships 3.12.10
(`Slicer_REQUIRED_PYTHON_VERSION` in Slicer's CMakeLists.txt at tags v5.8.0, v5.8.1 and v5.10.0), so 5.10 is
the minimum (also declared in the README and checked by the extension's CMakeLists.txt).
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
