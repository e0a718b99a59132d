"""Static checks of the Slicer extension: what the Extensions Index build packages and what Slicer
loads. Every shipped file listed in CMake (unlisted files are silently not packaged), names that
agree, a valid catalog entry, a .ui that holds every widget the code uses, no heavy import when
Slicer loads the module, and torch never installed with pip."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_FILE = REPO / "SATSegment" / "SATSegment.py"
HELPERS = REPO / "SATSegment" / "SATSegmentSlicerLib"
WIDGET_PARTS = sorted((REPO / "SATSegment" / "SATSegmentWidgets").glob("*.py"))  # the panel's parts
WIDGET_CODE = [MODULE_FILE, *WIDGET_PARTS]
UI_FILE = REPO / "Resources" / "UI" / "SATSegment.ui"
SHIPPED_FOLDERS = ("SATSegmentLib", "Resources", "SATSegment")
# Facts of https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json
CATALOG_SCHEMA = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json"
CATALOG_TYPES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                 "build_dependencies": list, "build_subdirectory": str, "enabled": bool, "tier": int}
# Allowed at file scope of the module (Slicer imports it at startup): Slicer's own modules and the std lib.
SLICER_MODULES = {"slicer", "qt", "ctk", "vtk"}


# -- CMake ------------------------------------------------------------------------------------------


def _cmake_sets(path: Path) -> dict[str, list[str]]:
    """`set(NAME v1 v2 ...)` blocks of a CMake file (comments removed), values unquoted."""
    text = re.sub(r"(^|\s)#[^\n]*", r"\1", path.read_text(encoding="utf-8"))  # not the '#' of a URL
    sets = {}
    for name, body in re.findall(r'\bset\(\s*(\w+)\s+((?:"[^"]*"|[^)"])*)\)', text, flags=re.S):
        sets[name] = re.findall(r'"([^"]*)"|(\S+)', body)
        sets[name] = [quoted or bare for quoted, bare in sets[name]]
    return sets


@pytest.fixture(scope="module")
def top_sets() -> dict[str, list[str]]:
    return _cmake_sets(REPO / "CMakeLists.txt")


@pytest.fixture(scope="module")
def module_sets() -> dict[str, list[str]]:
    return _cmake_sets(REPO / "SATSegment" / "CMakeLists.txt")


def _shipped_files() -> set[str]:
    """Files of the shipped folders as the repository has them (tracked or new, not ignored)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *SHIPPED_FOLDERS],
                                cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
        files = {f for f in listed if f and (REPO / f).is_file()}
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the folders
        files = {str(p.relative_to(REPO)).replace(os.sep, "/") for folder in SHIPPED_FOLDERS
                 for p in (REPO / folder).rglob("*") if p.is_file()}
    return {f for f in files if "__pycache__" not in f and not f.endswith((".pyc", "CMakeLists.txt"))}


def test_every_shipped_file_is_listed_in_cmake_and_every_listed_file_exists(top_sets, module_sets):
    listed = set(top_sets["SATSegmentLib_SCRIPTS"] + top_sets["SATSegmentLib_RESOURCES"] + top_sets["SATSegment_RESOURCES"])
    listed |= {"SATSegment/" + f.replace("${MODULE_NAME}", "SATSegment") for f in module_sets["MODULE_PYTHON_SCRIPTS"]}
    shipped = _shipped_files()
    missing, stale = sorted(shipped - listed), sorted(listed - shipped)
    assert not missing, "add these files to CMakeLists.txt (SATSegment/CMakeLists.txt for SATSegment/...):\n  " + "\n  ".join(missing)
    assert not stale, "these files are listed in CMake but do not exist:\n  " + "\n  ".join(stale)


def test_scripts_and_resources_are_in_the_right_lists(top_sets, module_sets):
    assert all(f.endswith(".py") for f in top_sets["SATSegmentLib_SCRIPTS"] + module_sets["MODULE_PYTHON_SCRIPTS"])
    assert not any(f.endswith(".py") for f in top_sets["SATSegmentLib_RESOURCES"] + top_sets["SATSegment_RESOURCES"])
    assert all(f.startswith("SATSegmentLib/") for f in top_sets["SATSegmentLib_SCRIPTS"] + top_sets["SATSegmentLib_RESOURCES"])
    assert all(f.startswith("Resources/") for f in top_sets["SATSegment_RESOURCES"])


def test_extension_metadata(top_sets):
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"^project\(SATSegment\)", text, flags=re.M)
    assert "add_subdirectory(SATSegment)" in text
    assert top_sets["EXTENSION_CATEGORY"] == ["Segmentation"]
    assert top_sets["EXTENSION_DEPENDS"] == ["PyTorch"]
    description = top_sets["EXTENSION_DESCRIPTION"][0]
    assert 1 <= len(re.findall(r"[.!?](\s|$)", description)) <= 2 and 60 < len(description) < 400
    assert top_sets["EXTENSION_CONTRIBUTORS"] and top_sets["EXTENSION_CONTRIBUTORS"][0].strip()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert all(url.startswith("https://") for url in top_sets[key]), key
    icon = top_sets["EXTENSION_ICONURL"][0]
    assert icon.endswith("/Resources/Icons/SATSegment.png") and (REPO / "Resources/Icons/SATSegment.png").is_file()
    png = (REPO / "Resources/Icons/SATSegment.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == int.from_bytes(png[20:24], "big") == 128


def test_module_cmake_builds_the_module_named_like_the_extension(module_sets):
    text = (REPO / "SATSegment" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert module_sets["MODULE_NAME"] == ["SATSegment"]
    assert "slicerMacroBuildScriptedModule(" in text and "${MODULE_NAME}.py" in module_sets["MODULE_PYTHON_SCRIPTS"]
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


# -- catalog entry and licence ----------------------------------------------------------------------


def test_catalog_entry_follows_schema_and_agrees_with_cmake(top_sets):
    catalog = json.loads((REPO / "SATSegment.json").read_text(encoding="utf-8"))
    assert catalog["$schema"] == CATALOG_SCHEMA
    assert {"$schema", "category", "scm_url"} <= set(catalog)
    assert set(catalog) <= set(CATALOG_TYPES), f"unknown keys: {set(catalog) - set(CATALOG_TYPES)}"
    for key, value in catalog.items():
        assert isinstance(value, CATALOG_TYPES[key]), key
    assert catalog.get("tier", 5) in (1, 3, 5)
    assert all(isinstance(d, str) for d in catalog.get("build_dependencies", []))
    assert catalog["category"] == top_sets["EXTENSION_CATEGORY"][0]
    assert catalog["build_dependencies"] == top_sets["EXTENSION_DEPENDS"]
    repository = catalog["scm_url"].removesuffix(".git")
    assert top_sets["EXTENSION_HOMEPAGE"][0].startswith(repository)
    owner_repo = repository.removeprefix("https://github.com/")
    assert top_sets["EXTENSION_ICONURL"][0].startswith(f"https://raw.githubusercontent.com/{owner_repo}/")


def test_licence_is_apache_2():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_shipped_json_files_parse():
    for name in sorted(_shipped_files()):
        if name.endswith(".json"):
            json.loads((REPO / name).read_text(encoding="utf-8"))


# -- the module file --------------------------------------------------------------------------------


def _file_scope_imports(path: Path) -> list[str]:
    """Modules imported when `path` is imported: every import not inside a function body."""
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.append("." * child.level + (child.module or ""))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _load_time_imports(path: Path, seen: set[Path] | None = None) -> set[str]:
    """Top-level modules imported when `path` loads, following the module's own helper package."""
    seen = seen if seen is not None else set()
    seen.add(path)
    modules = set()
    for name in _file_scope_imports(path):
        helper = None
        if name.startswith("."):
            helper = path.parent / (name.lstrip(".").replace(".", "/") + ".py")
        elif name.startswith("SATSegmentSlicerLib."):
            helper = HELPERS / (name.split(".", 1)[1].replace(".", "/") + ".py")
        elif name == "SATSegmentSlicerLib":
            helper = HELPERS / "__init__.py"
        if helper is not None:
            if helper not in seen and helper.is_file():
                modules |= _load_time_imports(helper, seen)
            continue
        modules.add(name.split(".")[0])
    return modules


def test_module_loads_without_heavy_or_third_party_imports():
    allowed = SLICER_MODULES | set(sys.stdlib_module_names) | {"SATSegmentSlicerLib", "SATSegmentWidgets"}
    assert WIDGET_PARTS and "SATSegmentWidgets" in _load_time_imports(MODULE_FILE)
    for path in WIDGET_CODE:  # the widget's parts load with it
        heavy = sorted(_load_time_imports(path) - allowed)
        assert not heavy, f"imported when Slicer loads {path.name} (import them inside functions): {heavy}"


def test_load_time_check_sees_nested_imports(tmp_path):
    """The check above must catch an import hidden in a class body or under a condition."""
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nclass A:\n    import torch\nif True:\n    from monai import x\ndef f():\n    import numpy\n")
    assert _load_time_imports(sample) == {"os", "torch", "monai"}


def test_module_has_the_slicer_classes():
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    bases = {name: {ast.unparse(base) for base in node.bases} for name, node in classes.items()}
    assert "ScriptedLoadableModule" in bases["SATSegment"]
    assert "ScriptedLoadableModuleWidget" in bases["SATSegmentWidget"]
    assert "ScriptedLoadableModuleLogic" in bases["SATSegmentLogic"]
    assert "ScriptedLoadableModuleTest" in bases["SATSegmentTest"]
    assert any(ast.unparse(d) == "parameterNodeWrapper" for d in classes["SATSegmentParameterNode"].decorator_list)
    assert "runTest" in {f.name for f in classes["SATSegmentTest"].body if isinstance(f, ast.FunctionDef)}


def _parameter_fields() -> set[str]:
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SATSegmentParameterNode")
    return {item.target.id for item in node.body if isinstance(item, ast.AnnAssign)}


def test_ui_file_has_every_widget_the_code_uses():
    root = ET.parse(UI_FILE).getroot()
    assert root.findtext("class") == "SATSegment"
    widgets = [w.get("name") for w in root.iter("widget")]
    assert len(widgets) == len(set(widgets)), "duplicate widget names in the .ui"
    used = {name for path in WIDGET_CODE for name in re.findall(r"\bui\.(\w+)", path.read_text(encoding="utf-8"))}
    assert used, "the check found no widget use at all"
    assert not used - set(widgets), f"used in the widget but missing from the .ui: {sorted(used - set(widgets))}"
    bound = {w.get("name"): w.find("property[@name='SlicerParameterName']/string").text
             for w in root.iter("widget") if w.find("property[@name='SlicerParameterName']") is not None}
    assert bound and set(bound.values()) <= _parameter_fields()


def test_torch_is_never_pip_installed():
    requirements = (REPO / "Resources" / "requirements.txt").read_text(encoding="utf-8")
    assert not re.search(r"^\s*torch", requirements, flags=re.M | re.I)
    for path in [MODULE_FILE, *HELPERS.glob("*.py"), *(REPO / "SATSegmentLib").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("pip_install"):
                constants = [c.value for arg in node.args for c in ast.walk(arg) if isinstance(c, ast.Constant)]
                assert not any("torch" in str(c).lower() for c in constants), f"{path}: {ast.unparse(node)}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not re.search(r"pip\W+install\W+.*\btorch\b", node.value), f"{path}: {node.value!r}"
    module = MODULE_FILE.read_text(encoding="utf-8")
    assert "installTorch(" in module and "torchVersionRequirement=" in module


def test_readme_has_the_sections_the_extensions_index_requires():
    text = (REPO / "README.md").read_text(encoding="utf-8").lower()
    for heading in ("summary", "screenshot", "module description", "tutorial", "citation", "safety and privacy"):
        assert re.search(rf"^#+ .*{heading}", text, flags=re.M), heading
    assert "2312.17183" in text and "sample data" in text


def test_contributors_read_name_and_affiliation(top_sets):
    """The Extensions Index expects "Name (Affiliation)", in CMake and in the module's contributors."""
    pattern = re.compile(r"^[^()]+ \([^()]+\)$")
    for contributor in top_sets["EXTENSION_CONTRIBUTORS"][0].split(","):
        assert pattern.match(contributor.strip()), contributor
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    assigned = [node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Attribute) and t.attr == "contributors" for t in node.targets)]
    assert assigned and all(pattern.match(item.value) for item in assigned[0].elts)


def test_translatable_strings_are_literals():
    """Slicer's translation tools extract `_("...")` and `translate("context", "...")` literals only."""
    calls = [node for path in WIDGET_CODE for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "translate")]
    assert len(calls) > 90
    for call in calls:
        assert call.args and all(isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in call.args), \
            f"line {call.lineno}: {ast.unparse(call)}"


def test_minimum_slicer_is_declared_and_checked():
    from SATSegmentSlicerLib import versions

    requires = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert tuple(int(part) for part in requires.groups()) == versions.MINIMUM_PYTHON
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert 'if(Slicer_REQUIRED_PYTHON_VERSION VERSION_LESS "3.10")' in cmake and "FATAL_ERROR" in cmake
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"Slicer {versions.MINIMUM_SLICER} or later" in readme
