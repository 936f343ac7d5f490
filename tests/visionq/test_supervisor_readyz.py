"""What ``visionq up``'s supervisor records in Redis (``Stack.record``) and who reads it:
``/readyz`` (``gave_up``, 503 while a critical role is given up) and the exporter
(``visionq_process_restarts_total{role}``).  Real Redis (the session's idle DB), the real
app and the exporter's real registry."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient

from api import create_app
from launcher.supervisor import GaveUp, Snapshot
from launcher.up import Stack
from monitoring.exporter import build_registry
from visionq.broker import beat, forget_worker
from visionq.settings import QUEUES, Settings

HOST = "readyz-test@host"


@pytest.fixture()
def stack(idle_redis_url: str) -> Stack:
    return Stack(settings=Settings(redis_url=idle_redis_url), queues=list(QUEUES))


@pytest.fixture()
def client(idle_redis_url: str) -> Iterator[FlaskClient]:
    """The app on a Redis where a worker for every queue is online (a heartbeat, written
    by the function workers use), so only the supervisor's record decides readiness."""
    conn = redis.Redis.from_url(idle_redis_url)
    beat(conn, HOST, list(QUEUES), time.time())
    with create_app({"redis_url": idle_redis_url, "history_writer": False}).test_client() as c:
        yield c
    forget_worker(conn, HOST)


def gave_up(role: str, ready_critical: bool) -> GaveUp:
    return GaveUp(role, "exit code 1; 5 exits within 120 s", critical=False,
                  ready_critical=ready_critical)


def test_ready_without_give_ups(stack: Stack, client: FlaskClient) -> None:
    assert stack.record(Snapshot(restarts={"api": 0, "worker-face": 2}))
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert "gave_up" not in response.get_json()


def test_a_given_up_worker_makes_readyz_503_and_is_named(stack: Stack,
                                                         client: FlaskClient) -> None:
    assert stack.record(Snapshot(restarts={"worker-face": 4},
                                 gave_up={"worker-face": gave_up("worker-face", True)}))
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not_ready" and body["gave_up"] == ["worker-face"]
    # the API itself can still queue jobs: its own readiness holds
    scoped = client.get("/readyz?scope=api")
    assert scoped.status_code == 200 and scoped.get_json()["gave_up"] == ["worker-face"]


def test_a_given_up_optional_role_is_named_but_not_fatal(stack: Stack,
                                                         client: FlaskClient) -> None:
    assert stack.record(Snapshot(gave_up={"flower": gave_up("flower", False)}))
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["gave_up"] == ["flower"]


def test_a_new_record_replaces_the_old(stack: Stack, client: FlaskClient) -> None:
    assert stack.record(Snapshot(gave_up={"worker-face": gave_up("worker-face", True)}))
    assert client.get("/readyz").status_code == 503
    assert stack.record(Snapshot(restarts={"worker-face": 0}))  # `visionq up` restarted
    assert client.get("/readyz").status_code == 200


def test_record_says_false_while_redis_is_down() -> None:
    down = Stack(settings=Settings(redis_url="redis://127.0.0.1:1/0"), queues=[])
    assert down.record(Snapshot(restarts={"api": 1})) is False


def test_exporter_serves_restarts_per_role(stack: Stack, idle_redis_url: str) -> None:
    registry = build_registry(idle_redis_url, ["face"], None, slos={"face": 1.0})
    name = "visionq_process_restarts_total"
    assert registry.get_sample_value(name, {"role": "worker-face"}) is None
    assert stack.record(Snapshot(restarts={"worker-face": 3, "api": 0}))
    assert registry.get_sample_value(name, {"role": "worker-face"}) == 3.0
    assert registry.get_sample_value(name, {"role": "api"}) == 0.0


def test_exporter_without_redis_still_serves(idle_redis_url: str) -> None:
    registry = build_registry("redis://127.0.0.1:1/0", ["face"], None, slos={"face": 1.0})
    assert registry.get_sample_value("visionq_redis_up") == 0.0
    assert registry.get_sample_value("visionq_process_restarts_total",
                                     {"role": "api"}) is None
