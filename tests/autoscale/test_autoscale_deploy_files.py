"""The shipped deploy files: IAM policy covers every call the EC2 backend makes; user-data
parses and keeps the drain semantics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "autoscale"


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def test_iam_policy_allows_exactly_what_the_backend_calls() -> None:
    source = (PKG / "backends" / "ec2.py").read_text()
    calls = set(re.findall(r"self\.client\.(\w+)\(", source)) - {"get_paginator"}
    calls |= {m for m in re.findall(r'get_paginator\("(\w+)"\)', source)}
    needed = {f"autoscaling:{_pascal(c)}" for c in calls}
    policy = json.loads((PKG / "iam-policy.json").read_text())
    allowed = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        allowed |= {actions} if isinstance(actions, str) else set(actions)
    assert needed == allowed, (needed - allowed, allowed - needed)


def test_user_data_is_valid_bash_and_drains_warm() -> None:
    script = PKG / "user-data.sh"
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    subprocess.run([bash, "-n", str(script)], check=True)
    text = script.read_text()
    assert "celery -A tasks worker -Q ${VISIONQ_QUEUES}" in text
    assert "KillSignal=SIGTERM" in text
    assert "target-lifecycle-state" in text and "complete_lifecycle_action" in text
    assert "kill -9" not in text and "SIGKILL\n" not in text
