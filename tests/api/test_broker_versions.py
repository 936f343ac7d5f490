"""The API refuses to start on a kombu outside the range ``visionq.kombu_redis`` was
verified against, before anything is queued."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, service_env
from tests.workers.test_broker_check import kombu_shim


def test_create_app_refuses_an_unverified_kombu(idle_redis_url: str, tmp_path: Path) -> None:
    env = service_env(idle_redis_url, PYTHONPATH=kombu_shim(tmp_path, "5.9.0"),
                      VISIONQ_HISTORY_WRITER="false")
    out = subprocess.run([sys.executable, "-c", "from api import create_app; create_app()"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "UnsupportedBrokerError: kombu '5.9.0' is installed" in out.stderr
    assert "kombu>=5.7,<5.8" in out.stderr
