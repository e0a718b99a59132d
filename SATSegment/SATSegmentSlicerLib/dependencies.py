"""Which Python packages the module needs and which are missing, found without importing them.

Importing torch or transformers takes seconds, so nothing here imports them: presence comes from
`importlib.util.find_spec` and versions from the installed distributions' metadata.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

# torch comes from the PyTorch extension (PyTorchUtils), never from pip_install here.
TORCH_REQUIREMENT = ">=2.1"

_IMPORT_NAMES = {"SimpleITK": "SimpleITK"}  # distribution name -> import name, where they differ by more than case


def readRequirements(path: Path) -> list[str]:
    """Requirement lines of a requirements file, without comments and blank lines."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def _splitRequirement(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    if not match:
        raise ValueError(f"cannot parse requirement {requirement!r}")
    return match.group(1), match.group(2).strip()


def isSatisfied(requirement: str) -> bool:
    """True if the package is importable and its installed version meets the specifier."""
    name, specifier = _splitRequirement(requirement)
    importName = _IMPORT_NAMES.get(name, name.replace("-", "_").lower())
    if importlib.util.find_spec(importName) is None:
        return False
    if not specifier:
        return True
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return True  # importable but installed without metadata (e.g. bundled with Slicer): accept it
    from packaging.specifiers import SpecifierSet  # light, ships with pip and Slicer

    return SpecifierSet(specifier).contains(installed, prereleases=True)


def missingRequirements(requirements: list[str]) -> list[str]:
    """The requirements that are not satisfied in this Python."""
    return [requirement for requirement in requirements if not isSatisfied(requirement)]


def torchMissing() -> bool:
    """True if torch is absent or older than TORCH_REQUIREMENT (checked without importing it)."""
    return not isSatisfied("torch" + TORCH_REQUIREMENT)
