"""Every benchmark command the README, the docs or the Makefile name still exists, with every
flag named beside it, so each published figure can be reproduced by the command printed
next to it (issue 27).  And every registered benchmark answers ``--help``."""

from __future__ import annotations

import argparse
import functools
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS, main

REPO = Path(__file__).resolve().parents[2]
SOURCES = [REPO / "README.md", REPO / "Makefile", *sorted((REPO / "docs").rglob("*.md"))]
NAMED = re.compile(r"python -m bench(?:\.(?P<module>\w+)| (?P<command>[a-z0-9][a-z0-9-]*))"
                   r"|python bench/(?P<script>\w+)\.py")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
STOP = re.compile(r"[`|\n]|\]\(")
"""Where a command's text ends: its code span, a table cell, a line, a link."""


def named_commands() -> list[tuple[str, str, list[str]]]:
    """``(where, module, flags)`` for each benchmark command the pages name."""
    found = []
    modules = {command: module for command, (module, _) in BENCHMARKS.items()}
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for match in NAMED.finditer(text):
            rest = STOP.split(text[match.end():], maxsplit=1)[0]
            if match["command"]:
                module = modules.get(match["command"], f"<unknown command {match['command']}>")
            else:
                module = match["module"] or match["script"]
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{source.relative_to(REPO)}:{line}", module, FLAG.findall(rest)))
    return found


@functools.cache
def help_text(module_name: str) -> str:
    module = importlib.import_module(f"bench.{module_name}")
    if hasattr(module, "add_arguments"):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        return parser.format_help()
    return subprocess.run([sys.executable, "-m", f"bench.{module_name}", "--help"], cwd=REPO,
                          capture_output=True, text=True, check=True, timeout=120).stdout


def test_the_pages_name_benchmarks() -> None:
    """The scan finds the commands (a broken pattern would pass everything below)."""
    modules = {module for _, module, _ in named_commands()}
    assert {"camera", "faces", "soak", "watch_soak", "autoscale_sim"} <= modules, modules


@pytest.mark.parametrize("where, module, flags", named_commands(),
                         ids=lambda value: value if isinstance(value, str) else None)
def test_named_command_exists_with_its_flags(where: str, module: str, flags: list[str]) -> None:
    assert (REPO / "bench" / f"{module}.py").is_file(), f"{where}: no benchmark {module}"
    text = help_text(module)
    missing = [flag for flag in flags if not re.search(rf"(?<![\w-]){flag}(?![\w-])", text)]
    assert not missing, f"{where}: bench {module} has no {missing}"


@pytest.mark.parametrize("command", sorted(BENCHMARKS))
def test_every_benchmark_answers_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert f"usage: python -m bench {command}" in capsys.readouterr().out
