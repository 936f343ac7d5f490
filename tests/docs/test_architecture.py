"""docs/architecture.md's job path matches the code.  The page draws the path of one job as
an indented list of ``module:qualname`` lines: each names a function or method that exists,
a line indented under another is used by it (the parent's code calls it, ``name(``, reads
it as an attribute, ``.name``, or passes it on, ``retrying(name, …)``; comments and strings
do not count), and lines under the same parent come in the order the parent's code uses
them.  A rename, a move or a
reordering in the code fails this test until the page says the same."""

from __future__ import annotations

import importlib
import inspect
import io
import re
import textwrap
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.test_layering import folder_graph, product_folders

PAGE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
HEADING = "## The path of one job"
LINE = re.compile(r"^(?P<indent> *)(?P<ref>[a-z_][\w.]*:[A-Za-z_][\w.]*)(?:\s{2,}(?P<what>.*))?$")
INDENT = 4


@dataclass
class Step:
    ref: str
    depth: int
    line: int
    children: list[Step] = field(default_factory=list)


def path_block(text: str) -> list[str]:
    """The lines of the first fenced block after the job path's heading."""
    start = text.index(f"\n{HEADING}\n")
    fence = text.index("\n```", start)
    end = text.index("\n```", fence + 4)
    return text[fence + 4:end].split("\n", 1)[1].splitlines()


def parse(lines: list[str]) -> list[Step]:
    """Top-level steps with their children; ``#`` lines and blank lines are commentary."""
    roots: list[Step] = []
    stack: list[Step] = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        match = LINE.match(raw)
        assert match, f"line {number} is not `module:qualname  what it does`: {raw!r}"
        indent = len(match.group("indent"))
        assert indent % INDENT == 0, f"line {number}: indent by {INDENT} spaces"
        step = Step(match.group("ref"), indent // INDENT, number)
        while stack and stack[-1].depth >= step.depth:
            stack.pop()
        if step.depth == 0:
            roots.append(step)
        else:
            assert stack and stack[-1].depth == step.depth - 1, f"line {number}: no parent"
            stack[-1].children.append(step)
        stack.append(step)
    return roots


def resolve(ref: str) -> Any:
    module_name, _, qualname = ref.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return inspect.unwrap(target)


def source_of(target: Any) -> str:
    if hasattr(target, "run") and not inspect.isfunction(target):  # a Celery task object
        target = target.run
    return textwrap.dedent(inspect.getsource(target))


def uses(source: str) -> list[str]:
    """The names the code calls (``name(``), reads as attributes (``.name``) or passes on
    (``f(name``, ``, name``), in order; not the names it defines, nothing in comments or
    strings."""
    tokens = []
    signature, depth = False, 0
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (tokenize.NAME, tokenize.OP):
            continue
        if token.type == tokenize.NAME and token.string == "def":
            signature, depth = True, 0  # a signature's parameters are not uses
            continue
        if signature:
            depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(token.string, 0)
            signature = not (token.string == ":" and depth == 0)
            continue
        tokens.append(token)
    found = []
    for before, token, after in zip([None, *tokens[:-1]], tokens, [*tokens[1:], None],
                                    strict=True):
        if token.type != tokenize.NAME or (before and before.string == "class"):
            continue
        if (after and after.string == "(") or (before and before.string in (".", "(", ",")):
            found.append(token.string)
    return found


def check(roots: list[Step]) -> list[str]:
    """Everything the page gets wrong about the code (empty: it matches)."""
    problems: list[str] = []

    def visit(step: Step) -> None:
        try:
            target = resolve(step.ref)
        except (ImportError, AttributeError) as exc:
            problems.append(f"line {step.line}: {step.ref} does not exist ({exc})")
            return
        if not step.children:
            return
        used = uses(source_of(target))
        last = -1
        for child in step.children:
            name = child.ref.rpartition(":")[2].rpartition(".")[2]
            if name not in used:
                problems.append(f"line {child.line}: {step.ref} does not use {name}")
            elif used.index(name) < last:
                problems.append(f"line {child.line}: {step.ref} uses {name} before the "
                                f"step above it")
            else:
                last = used.index(name)
            visit(child)

    for root in roots:
        visit(root)
    return problems


def test_the_architecture_pages_job_path_is_the_codes() -> None:
    roots = parse(path_block(PAGE.read_text()))
    assert len(roots) >= 3, "the path has the API's submit, the worker's task and the wait"
    assert sum(1 for _ in walk(roots)) >= 12, "the path names the steps, not just the ends"
    problems = check(roots)
    assert not problems, "docs/architecture.md's job path:\n" + "\n".join(problems)


def walk(steps: list[Step]) -> Any:
    for step in steps:
        yield step
        yield from walk(step.children)


@pytest.mark.parametrize(("block", "complaint"), [
    ("tests.docs.test_architecture:check\n    tests.docs.test_architecture:no_such\n",
     "does not exist"),
    ("tests.docs.test_architecture:check\n    tests.docs.test_architecture:parse\n",
     "does not use parse"),
    ("tests.docs.test_architecture:parse\n    tests.docs.test_architecture:Step\n"
     "    tests.docs.test_architecture:LINE.match\n", "before the step above"),
])
def test_a_path_that_is_not_the_codes_fails(block: str, complaint: str) -> None:
    """The check can fail: a name that does not exist, a call that is not made, two calls
    in the wrong order."""
    problems = check(parse(block.splitlines()))
    assert any(complaint in problem for problem in problems), problems


def rooms_table(text: str) -> dict[str, set[str]]:
    """The rooms table: folder -> the folders it imports, as the page states them."""
    start = text.index("\n## The rooms of the code\n")
    lines = text[start:].splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| folder |"))
    rooms = {}
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        folder, _job, imports = (cell.strip() for cell in line.strip("|").split(" | "))
        rooms[folder.strip("`/")] = set(re.findall(r"`(\w+)`", imports))
    return rooms


def test_the_rooms_table_is_the_import_graph() -> None:
    """Every product folder is a row, and its "imports" cell is what its code imports."""
    folders = product_folders()
    edges = folder_graph(folders)
    actual = {folder: {b for a, b in edges if a == folder} for folder in folders}
    assert rooms_table(PAGE.read_text()) == actual
