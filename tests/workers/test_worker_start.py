"""A worker that cannot load its model says so at start-up and exits; it never waits
for the first job to fail."""

from __future__ import annotations

import subprocess

from tests.conftest import BIN, REPO, service_env


def test_model_that_fails_to_load_stops_the_worker_with_a_clear_message(redis_url: str) -> None:
    env = service_env(redis_url, VISIONQ_MODEL_CLASSIFY="tests.workers.sleepy_model:SleepyModel",
                      SLEEPY_FAIL_LOAD="weights file is corrupt")
    out = subprocess.run([str(BIN / "celery"), "-A", "tasks", "worker", "-Q", "classify",
                          "-n", "broken@testhost", "--without-mingle", "--without-gossip"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    output = out.stdout + out.stderr
    assert "cannot start a worker for queue 'classify'" in output
    assert "weights file is corrupt" in output


def test_unknown_model_name_is_a_clear_error(redis_url: str) -> None:
    env = service_env(redis_url, VISIONQ_MODEL_DETECT="no_such_model")
    out = subprocess.run([str(BIN / "celery"), "-A", "tasks", "worker", "-Q", "detect",
                          "-n", "unknown@testhost", "--without-mingle", "--without-gossip"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "unknown model 'no_such_model'" in out.stdout + out.stderr
