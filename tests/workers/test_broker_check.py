"""A worker on a kombu outside the verified range (``visionq.kombu_redis``) stops at start
with a clear message and takes no message; one with a ``global_keyprefix`` is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from tasks import make_celery
from tasks.message import celery_message
from tests.conftest import BIN, REPO, service_env
from visionq.settings import Settings
from workers.broker_check import refusal


def kombu_shim(folder: Path, version: str) -> str:
    """A ``sitecustomize`` that makes the installed kombu report ``version`` (as an upgrade
    would) before Celery starts; returns the ``PYTHONPATH`` that loads it."""
    (folder / "sitecustomize.py").write_text(
        f"import kombu\nkombu.__version__ = {version!r}\n")
    return f"{folder}:{REPO}"


def test_a_kombu_outside_the_range_stops_the_worker(idle_redis_url: str, tmp_path: Path) -> None:
    celery = make_celery(Settings(redis_url=idle_redis_url))
    client = redis.Redis.from_url(idle_redis_url)
    key, payload = celery_message(celery, "classify", "job-waiting")
    client.lpush(key, payload)
    env = service_env(idle_redis_url, PYTHONPATH=kombu_shim(tmp_path, "5.9.0"),
                      VISIONQ_MODEL_CLASSIFY="tests.workers.sleepy_model:SleepyModel")
    out = subprocess.run([str(BIN / "celery"), "-A", "tasks", "worker", "-Q", "classify",
                          "-n", "upgraded@testhost", "--without-mingle", "--without-gossip"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    output = out.stdout + out.stderr
    assert out.returncode != 0, output
    assert "visionq worker refused to start: kombu '5.9.0' is installed" in output
    assert "kombu>=5.7,<5.8" in output
    assert client.lrange(key, 0, -1) == [payload]  # the message was not taken


def test_a_global_keyprefix_is_refused(idle_redis_url: str) -> None:
    celery = make_celery(Settings(redis_url=idle_redis_url))
    assert refusal(celery) is None
    celery.conf.broker_transport_options = {**celery.conf.broker_transport_options,
                                            "global_keyprefix": "vq:"}
    message = refusal(celery)
    assert message is not None and "global_keyprefix='vq:'" in message
