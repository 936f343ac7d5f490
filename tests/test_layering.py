"""The folders' import graph is a ladder: the core (``visionq/``) at the bottom imports no
role, no two folders import each other and no circle runs through several.

Every product module (the wheel's packages, pyproject.toml) is parsed with ``ast``; every
import counts, at any depth (inside functions too), so a circle cannot hide behind an
import made late.  On failure the graph is printed, each edge with one import that makes it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import BIN

ROOT = Path(__file__).resolve().parents[1]
CORE = "visionq"


def product_folders() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def folder_graph(folders: list[str]) -> dict[tuple[str, str], str]:
    """(importing folder, imported folder) -> one ``path:line module`` that makes the edge."""
    edges: dict[tuple[str, str], str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, module in imported_modules(tree):
                target = module.split(".")[0]
                if target in folders and target != folder:
                    edges.setdefault((folder, target),
                                     f"{path.relative_to(ROOT)}:{line} {module}")
    return edges


def describe(edges: dict[tuple[str, str], str]) -> str:
    return "\n".join(f"  {a} -> {b}   ({why})" for (a, b), why in sorted(edges.items()))


def find_cycle(nodes: list[str], edges: dict[tuple[str, str], str]) -> list[str] | None:
    """A circle of folders (first node repeated at the end), or None."""
    successors = {node: sorted(b for a, b in edges if a == node) for node in nodes}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in successors[node]:
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in nodes:
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_core_imports_no_role() -> None:
    folders = product_folders()
    edges = folder_graph(folders)
    upward = {edge: why for edge, why in edges.items() if edge[0] == CORE}
    assert not upward, (f"the core ({CORE}/) imports a role:\n{describe(upward)}\n\n"
                        f"the whole graph:\n{describe(edges)}")


def test_no_two_folders_import_each_other_and_no_circle() -> None:
    folders = product_folders()
    edges = folder_graph(folders)
    mutual = {edge: why for edge, why in edges.items() if (edge[1], edge[0]) in edges}
    assert not mutual, f"folders importing each other:\n{describe(mutual)}"
    cycle = find_cycle(folders, edges)
    assert cycle is None, (f"a circle of folders: {' -> '.join(cycle or [])}\n\n"
                           f"the whole graph:\n{describe(edges)}")


def test_the_checks_see_a_circle() -> None:
    """The checker itself: a made-up circle of three is found, a ladder is not."""
    ladder = {("a", "b"): "", ("b", "c"): "", ("a", "c"): ""}
    assert find_cycle(["a", "b", "c"], ladder) is None
    circle = {**ladder, ("c", "a"): ""}
    assert find_cycle(["a", "b", "c"], circle) in (["a", "b", "c", "a"], ["a", "c", "a"])


def test_imports_sit_at_the_top_and_every_lazy_one_says_why() -> None:
    """ruff's PLC0415 finds nothing in the product folders, and each ``noqa: PLC0415`` (an
    optional, heavy extra loaded only where it is used) gives its reason on the line or in
    a comment just above."""
    folders = product_folders()
    result = subprocess.run([str(BIN / "ruff"), "check", "--select",
                             "PLC0415", "--output-format", "concise", *folders], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    bare = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = path.read_text().splitlines()
            for number, line in enumerate(lines, 1):
                match = re.search(r"#\s*noqa:\s*PLC0415(.*)$", line)
                if match and not match.group(1).strip(" -:,") and not (
                        number >= 2 and lines[number - 2].strip().startswith("#")):
                    bare.append(f"{path.relative_to(ROOT)}:{number}")
    assert not bare, f"noqa: PLC0415 without a reason: {bare}"
