"""The worker's modules read one way: no module of ``workers/`` imports, even inside a
function, a module that imports it back (directly or around a circle), and the job's path
is app -> delivery -> runner -> finish -> claim, never back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _graph() -> dict[str, set[str]]:
    modules: dict[str, Path] = {}
    for path in (ROOT / "workers").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):  # inside functions too
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {other for other in imported if other in modules and other != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                circles.append([*path[path.index(other):], other])
            elif other not in state:
                visit(other)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return circles


def test_no_module_of_the_worker_imports_itself_around_a_circle() -> None:
    graph = _graph()
    assert "workers.app" in graph and "workers.custom.cache" in graph
    assert _circles(graph) == []


def test_the_job_path_goes_one_way() -> None:
    graph = _graph()
    path = ["workers.app", "workers.delivery", "workers.runner", "workers.finish",
            "workers.claim"]
    for caller, callee in zip(path, path[1:], strict=False):
        assert callee in graph[caller], f"{caller} should hand the job to {callee}"
    for later, earlier in ((b, a) for i, a in enumerate(path) for b in path[i + 1:]):
        assert earlier not in graph[later], f"{later} goes back to {earlier}"
