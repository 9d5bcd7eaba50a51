"""The import layers: leaf modules that any layer may read import nothing from the package, the
error module knows no tool, and no test module imports another (shared helpers live in
tests/support.py, fixtures in tests/conftest.py). Read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

PACKAGE = ROOT / "retab_mcp"


def imports_of(path: Path) -> set[str]:
    """The modules `path` imports, by absolute name (relative imports resolved within the package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def package_imports(module: str) -> set[str]:
    """Every module of the package that `module` imports, directly or through others."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        path = ROOT / (todo.pop().replace(".", "/") + ".py")
        if not path.exists():
            continue
        for name in imports_of(path):
            if name.startswith("retab_mcp.") and name not in seen:
                seen.add(name)
                todo.append(name)
    return {name for name in seen if (ROOT / (name.replace(".", "/") + ".py")).exists()}


def test_leaf_modules_import_nothing_from_the_package() -> None:
    for leaf in ("retab_mcp._version", "retab_mcp._json"):
        assert package_imports(leaf) == set(), leaf


def test_the_error_module_knows_no_tool() -> None:
    assert "retab_mcp.endpoints" not in package_imports("retab_mcp.errors")


def test_no_test_module_imports_another() -> None:
    tests = {path.stem for path in (ROOT / "tests").glob("test_*.py")}
    for path in sorted((ROOT / "tests").glob("*.py")):
        imported = {name.split(".")[1] for name in imports_of(path) if name.startswith("tests.")}
        assert not imported & (tests | {"conftest"}), f"{path.name} imports {sorted(imported & (tests | {'conftest'}))}"
