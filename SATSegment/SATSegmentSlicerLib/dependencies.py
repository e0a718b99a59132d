"""Which Python packages the module needs and which are missing, found without importing them.

Importing torch or transformers takes seconds, so nothing here imports them: presence comes from
`importlib.util.find_spec` and versions from the installed distributions' metadata.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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


@dataclass
class InstallOutcome:
    """What `DependencyInstaller.install` did: status 'installed', 'restart' (PyTorch is installed but Slicer
    must restart before it can be used) or 'noPyTorchExtension' (torch is missing and the PyTorch extension
    is not installed); `packages` are the requirements that were missing."""

    status: str
    packages: list[str] = field(default_factory=list)


class DependencyInstaller:
    """Installs what is missing: torch through the PyTorch extension, the rest with pip. The caller asks the
    user first (`missing()` says what to list), as SlicerNNUnet's installer does.

    `installTorch()` returns the torch module, None when Slicer needs a restart first, and raises
    ImportError when the PyTorch extension is absent; `pipInstall(list)` installs the others.
    """

    def __init__(self, requirementsFile: Path, installTorch: Callable[[], object], pipInstall: Callable[[list[str]], None]) -> None:
        self.requirementsFile = Path(requirementsFile)
        self.installTorch, self.pipInstall = installTorch, pipInstall

    def requirements(self) -> list[str]:
        return readRequirements(self.requirementsFile)

    def missing(self) -> list[str]:
        """Requirements not satisfied, torch first."""
        return (["torch" + TORCH_REQUIREMENT] if torchMissing() else []) + missingRequirements(self.requirements())

    def install(self) -> InstallOutcome:
        missing = self.missing()
        if torchMissing():
            try:
                torch = self.installTorch()
            except ImportError:
                return InstallOutcome("noPyTorchExtension", missing)
            if torch is None:
                return InstallOutcome("restart", missing)
        remaining = missingRequirements(self.requirements())
        if remaining:
            self.pipInstall(remaining)
        return InstallOutcome("installed", missing)
