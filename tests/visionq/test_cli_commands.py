"""The ``visionq`` command finds the roles' subcommands through the ``visionq.commands``
entry points (``visionq.cli.RoleGroup``): every one is listed and loads, and a core
subcommand loads no role."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import click
import pytest
from click.testing import CliRunner

from visionq import cli
from visionq.cli import COMMANDS_GROUP, main, role_commands

ROLE_COMMANDS = {"up", "watch", "worker", "install-models", "autoscale", "report"}
CORE_COMMANDS = {"submit", "stream", "status"}
ROLES = ("api", "tasks", "workers", "monitoring", "autoscale", "launcher")


def test_every_role_subcommand_is_an_installed_entry_point() -> None:
    found = role_commands()
    assert set(found) == ROLE_COMMANDS, f"{COMMANDS_GROUP}: {sorted(found)}"
    for name, entry_point in found.items():
        assert isinstance(entry_point.load(), click.Command), name
        assert entry_point.value.split(".")[0] != "visionq", f"{name}: a role's, not the core's"


def test_help_lists_the_core_and_the_roles_subcommands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines()
              if line.strip()}
    assert listed == ROLE_COMMANDS | CORE_COMMANDS


def test_each_subcommand_answers_help() -> None:
    for name in sorted(ROLE_COMMANDS | CORE_COMMANDS):
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "sage:" in result.output, (name, result.output)  # click's or argparse's


def test_an_unknown_subcommand_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_a_core_subcommand_loads_no_role() -> None:
    code = ("import sys\nfrom visionq.cli import main\n"
            "try:\n    main(['status', '--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(ROLES)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_a_role_that_cannot_be_imported_is_said_not_fatal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point whose module is missing (an extra not installed): ``--help`` still
    lists every subcommand, and running that one says why, exit status 1."""
    installed = role_commands()
    broken = EntryPoint(name="broken", value="no_such_visionq_role.commands:cmd",
                        group=COMMANDS_GROUP)
    monkeypatch.setattr(cli, "role_commands", lambda: {**installed, "broken": broken})
    listing = CliRunner().invoke(main, ["--help"])
    assert listing.exit_code == 0, listing.output
    assert "broken" in listing.output and "unavailable" in listing.output
    assert "submit" in listing.output and "up" in listing.output
    result = CliRunner().invoke(main, ["broken", "--anything"])
    assert result.exit_code == 1
    assert "no_such_visionq_role" in result.output
