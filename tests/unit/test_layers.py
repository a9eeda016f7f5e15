"""The layers of ``shared/`` import only downward, and each bundle holds only its layers.

platform <- core <- one package per function (collect, retrain, predict, monitor);
the operator CLI may use everything; nothing deployed imports ``tools`` or ``tests``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.platform.settings import PROJECT_ROOT
from tools.bundle import FUNCTIONS, PACKAGES, bundle_files

SHARED = PROJECT_ROOT / "shared"
FUNCTION_PACKAGES = ("collect", "retrain", "predict", "monitor")
ALLOWED = {"platform": {"platform"}, "core": {"platform", "core"},
           **{p: {"platform", "core", p} for p in FUNCTION_PACKAGES}}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, at any depth (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "shared" and len(parts) > 1 and parts[1] in ALLOWED else None


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_layer_imports_only_downward(package):
    violations = []
    for path in sorted((SHARED / package).rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            layer = layer_of(module)
            if top in ("tools", "tests", "functions") or (layer is not None and layer not in ALLOWED[package]) \
                    or module == "shared.cli":
                violations.append(f"{path.relative_to(PROJECT_ROOT)} imports {module}")
    assert not violations, violations


@pytest.mark.parametrize("function", FUNCTIONS)
def test_entry_points_import_their_own_package_and_the_layers_below(function):
    allowed = {"platform", "core", PACKAGES[function]}
    modules = imported_modules(PROJECT_ROOT / "functions" / function / "main.py")
    shared = {m for m in modules if m.startswith("shared.")}
    assert shared and all(layer_of(m) in allowed for m in shared), sorted(shared)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_bundle_ships_only_the_layers_its_function_may_import(function):
    packages = {Path(name).parts[1] for name, _ in bundle_files(function) if name.startswith("shared/")
                and len(Path(name).parts) > 2}
    assert packages == {"platform", "core", PACKAGES[function]}
