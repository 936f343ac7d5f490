"""``visionq up`` starts the webhook sender as a role of its own (not critical: the stack
serves without it, the deliveries wait in Redis)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from launcher.up import Stack
from visionq.settings import Settings


def test_up_plans_a_callbacks_role(tmp_path: Path) -> None:
    stack = Stack(Settings(state_dir=tmp_path), ["classify"], prometheus=False, flower=False,
                  out=io.StringIO())
    [role] = [s for s in stack.plan() if s.name == "callbacks"]
    assert role.command[1:] == ["-m", "visionq.callbacks"]
    assert not role.critical


def test_the_role_has_help() -> None:
    shown = subprocess.run([sys.executable, "-m", "visionq.callbacks", "--help"],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "VISIONQ_CALLBACK_ALLOW" in shown
