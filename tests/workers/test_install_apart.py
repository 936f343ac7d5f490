"""The install tools (``workers.install``: fetch, verify and convert weights, run by
``visionq install-models``) stay out of the worker's runtime: no runtime module imports them
or defines one, and the runtime finds the weights through ``workers.weights`` alone."""

from __future__ import annotations

import ast
from pathlib import Path

WORKERS = Path(__file__).resolve().parents[2] / "workers"
INSTALLER = {WORKERS / "commands.py"}
"""The one runtime-free module that runs the install tools (``visionq install-models``)."""
TOOL_NAMES = ("install", "fetch_tarball", "fetch_wheel", "convert")


def _runtime_modules() -> list[Path]:
    return [path for path in sorted(WORKERS.rglob("*.py"))
            if "install" not in path.relative_to(WORKERS).parts[:-1] and path not in INSTALLER]


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_runtime_imports_no_install_tool() -> None:
    modules = _runtime_modules()
    assert WORKERS / "runner.py" in modules and WORKERS / "weights.py" in modules
    offenders = {
        str(path.relative_to(WORKERS)): sorted(
            name for name in _imported(ast.parse(path.read_text()))
            if name == "workers.install" or name.startswith("workers.install."))
        for path in modules}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_no_runtime_module_is_an_install_tool() -> None:
    tools = {
        str(path.relative_to(WORKERS)): [
            node.name for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name in TOOL_NAMES]
        for path in _runtime_modules()}
    assert {path: names for path, names in tools.items() if names} == {}
