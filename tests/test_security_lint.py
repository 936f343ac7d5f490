"""Issue 30, item 8: bandit's checks (ruff's S rules) over the product folders, in the
suite, so a finding fails ``make test`` and not only ``make audit``.  Every finding is
fixed or carries a ``noqa: S...`` with its reason on the line (``pyproject.toml``)."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import BIN, REPO

PRODUCT_DIRS = ["api", "tasks", "workers", "autoscale", "monitoring", "visionq", "launcher"]


def test_bandit_rules_find_nothing_in_the_product() -> None:
    result = subprocess.run([str(BIN / "ruff"), "check", "--select", "S", "--output-format",
                             "concise", *PRODUCT_DIRS], cwd=REPO, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_bandit_exception_says_why() -> None:
    bare = []
    for folder in PRODUCT_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                match = re.search(r"#\s*noqa:\s*(S\d+)(.*)$", line)
                if match and not match.group(2).strip(" -:,") and not _reason_above(
                        path, number):
                    bare.append(f"{path.relative_to(REPO)}:{number}")
    assert not bare, f"noqa: S... without a reason: {bare}"


def _reason_above(path, number: int) -> bool:
    """A comment on the line above counts as the reason."""
    lines = path.read_text().splitlines()
    return number >= 2 and lines[number - 2].strip().startswith("#")
