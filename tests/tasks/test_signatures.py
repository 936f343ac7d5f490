"""The producer's side: ``make_celery(settings)`` builds an app per configuration, and
``enqueue`` publishes a job by task name with the job id as the only argument.  A producer
imports no worker code."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator

import pytest
import redis

from tasks import TASK_NAMES, enqueue, make_celery
from tasks.config import WORKER_MODULES
from tasks.signatures import queue_of
from tests.conftest import BIN, REPO
from visionq.custom_models import CUSTOM_QUEUE
from visionq.settings import QUEUES, Settings


@pytest.fixture()
def other_redis_url(redis_server: tuple[int, subprocess.Popen]) -> Iterator[str]:
    """DB 12 of the session Redis, which no worker consumes."""
    url = f"redis://127.0.0.1:{redis_server[0]}/12"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def _messages(url: str, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in redis.Redis.from_url(url).lrange(queue, 0, -1)]


def test_enqueue_publishes_the_job_id_only(idle_redis_url: str) -> None:
    enqueue(make_celery(Settings(redis_url=idle_redis_url)), "detect", "job-1")
    [message] = _messages(idle_redis_url, "detect")
    headers = message["headers"]
    assert headers["task"] == "visionq.detect" and headers["id"] == "job-1"
    assert message["content-type"] == "application/json"
    assert message["properties"]["body_encoding"] == "base64"  # kombu's Redis transport
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert args == ["job-1"] and kwargs == {}
    assert _messages(idle_redis_url, "face") == _messages(idle_redis_url, "classify") == []


def test_each_app_publishes_to_its_own_redis(idle_redis_url: str,
                                             other_redis_url: str) -> None:
    """What ``create_app`` relies on: apps with different settings in one process."""
    first = make_celery(Settings(redis_url=idle_redis_url))
    second = make_celery(Settings(redis_url=other_redis_url))
    for _ in range(2):  # interleaved: no app's pool is closed by another's
        enqueue(first, "face", "a")
        enqueue(second, "face", "b")
    assert [m["headers"]["id"] for m in _messages(idle_redis_url, "face")] == ["a", "a"]
    assert [m["headers"]["id"] for m in _messages(other_redis_url, "face")] == ["b", "b"]


def test_task_names_and_queues() -> None:
    queues = [*QUEUES, CUSTOM_QUEUE]  # one queue carries every custom model's jobs
    assert set(TASK_NAMES) == set(queues) and TASK_NAMES["face"] == "visionq.face"
    assert [queue_of(TASK_NAMES[queue]) for queue in queues] == queues
    assert queue_of("celery.ping") is None
    assert queue_of("other.face") is None


def test_the_worker_side_is_imported_by_workers_only() -> None:
    app = make_celery(Settings())
    assert tuple(app.conf.imports) == WORKER_MODULES == ("workers.app",)


PRODUCER = """
import json, sys
import tasks
from api import create_app
create_app()
print(json.dumps(sorted(m for m in sys.modules if m == "workers" or m.startswith("workers."))))
"""


def test_a_producer_imports_no_worker_code() -> None:
    result = subprocess.run([str(BIN / "python"), "-c", PRODUCER], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
