"""``visionq.kombu_redis``: the one product module that knows kombu's Redis layout.

Its pieces are tested against kombu's own code where they are used: queue lengths, in-flight
counts and bindings in ``tests/visionq/test_broker.py``, the envelope in
``tests/tasks/test_message.py``, claim/ack/give-back in ``tests/workers/test_claim.py``,
the exporter's reads in ``tests/monitoring/test_metrics.py``; and here, queue lengths,
in-flight counts and bindings against a real valkey server with messages from real
kombu/Celery."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import redis
from celery import Celery
from kombu import Connection, Exchange, Producer, Queue

from visionq import kombu_redis

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("api", "tasks", "workers", "autoscale", "monitoring", "visionq", "launcher")
ADAPTER = ROOT / "visionq" / "kombu_redis"
KOMBU_NAMES = re.compile(
    r"unacked|_kombu\.|\\x06\\x16|\x06\x16|delivery_tag|body_encoding|global_keyprefix",
    re.IGNORECASE)
"""kombu's Redis keys (``unacked``, ``unacked_index``, ``_kombu.binding.*``), its
priority separator, its envelope's own fields and its key prefix option."""


def _product_files() -> list[Path]:
    return [path for folder in PRODUCT for path in sorted((ROOT / folder).rglob("*"))
            if path.is_file() and path.suffix in {".py", ".lua"}
            and "__pycache__" not in path.parts]


def test_only_the_adapter_names_kombus_keys() -> None:
    files = _product_files()
    assert len(files) > 100 and ADAPTER / "__init__.py" in files
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in files if ADAPTER not in path.parents
             for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if KOMBU_NAMES.search(line)]
    assert found == [], "kombu's Redis layout outside visionq/kombu_redis:\n" + "\n".join(found)


def test_the_adapter_does_name_them() -> None:
    """The pattern above matches what the adapter really writes (so the test above can
    fail)."""
    text = "\n".join(p.read_text() for p in ADAPTER.iterdir() if p.is_file())
    for name in ("unacked", "unacked_index", "_kombu.binding.", "\\x06\\x16", "delivery_tag"):
        assert KOMBU_NAMES.search(name) and name in text


def test_lua_is_loaded_from_the_files_beside_it() -> None:
    assert (ADAPTER / "claim.lua").read_text() == kombu_redis.CLAIM_SCRIPT
    assert (ADAPTER / "give_back.lua").read_text() == kombu_redis.GIVE_BACK_SCRIPT
    assert "redis.call('HSET', KEYS[3], tag" in kombu_redis.CLAIM_SCRIPT


def test_keys() -> None:
    assert kombu_redis.priority_keys("face") == [
        "face", "face\x06\x163", "face\x06\x166", "face\x06\x169"]
    assert kombu_redis.publish_key("face") == "face"
    assert kombu_redis.ack_commands("t1") == [("ZREM", "unacked_index", "t1"),
                                              ("HDEL", "unacked", "t1")]


@pytest.mark.parametrize("options", [None, {}, {"global_keyprefix": ""},
                                     {"visibility_timeout": 5}])
def test_no_key_prefix_is_accepted(options: dict | None) -> None:
    kombu_redis.check_transport_options(options)


def test_a_key_prefix_is_refused() -> None:
    with pytest.raises(kombu_redis.UnsupportedBrokerError, match="global_keyprefix='vq:'"):
        kombu_redis.check_transport_options({"global_keyprefix": "vq:"})


@pytest.mark.parametrize(("kombu_version", "celery_version", "refused"), [
    ("5.7.0", "5.7.0", None),
    ("5.7", "5.7.3", None),
    ("5.7.12", "5.7.0.post1", None),
    ("5.7.0+local", "5.7.0", None),
    ("5.8.0", "5.7.0", "kombu '5.8.0'"),
    ("5.9.0", "5.7.0", "kombu '5.9.0'"),
    ("5.10.0", "5.7.0", "kombu '5.10.0'"),  # not a string comparison
    ("6.0.0", "5.7.0", "kombu '6.0.0'"),
    ("5.6.9", "5.7.0", "kombu '5.6.9'"),
    ("5.7.0rc1", "5.7.0", "kombu '5.7.0rc1'"),  # before 5.7.0
    ("5.8.0a1", "5.7.0", "kombu '5.8.0a1'"),  # 5.8's pre-release: outside <5.8
    ("not-a-version", "5.7.0", "kombu 'not-a-version'"),
    ("", "5.7.0", "kombu ''"),
    ("5.7.0", "5.8.1", "celery '5.8.1'"),
    ("5.7.0", "5.5.0", "celery '5.5.0'"),
    ("5.9.0", "6.0.0", "kombu '5.9.0'.*; celery '6.0.0'"),
])
def test_versions(kombu_version: str, celery_version: str, refused: str | None) -> None:
    if refused is None:
        kombu_redis.check_versions(kombu_version, celery_version)
        return
    with pytest.raises(kombu_redis.UnsupportedBrokerError, match=refused) as info:
        kombu_redis.check_versions(kombu_version, celery_version)
    assert "verified against" in str(info.value) and ">=5.7,<5.8" in str(info.value)


def test_installed_versions_are_the_verified_ones() -> None:
    kombu_redis.check_installed({"visibility_timeout": 60})


def test_pyproject_pins_the_verified_range() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"kombu{kombu_redis.VERIFIED_KOMBU}" in dependencies
    assert f"celery[redis]{kombu_redis.VERIFIED_CELERY}" in dependencies


def publish(url: str, queue: str, n: int, priority: int | None = None) -> None:
    q = Queue(queue, Exchange(queue, type="direct"), routing_key=queue,
              queue_arguments={"x-max-priority": 9} if priority is not None else None)
    with Connection(url) as conn:
        producer = Producer(conn)
        for i in range(n):
            producer.publish({"i": i}, exchange=q.exchange, routing_key=queue, declare=[q],
                             priority=priority)


def test_queue_length_counts_every_priority_list(scaler_redis_url: str, rconn: redis.Redis) -> None:
    assert kombu_redis.queue_length(rconn, "face") == 0
    publish(scaler_redis_url, "face", 3)
    publish(scaler_redis_url, "face", 2, priority=9)
    publish(scaler_redis_url, "detect", 4)
    assert rconn.llen("face") == 3
    assert rconn.llen("face\x06\x169") == 2  # kombu's sub-queue for priority step 9
    assert kombu_redis.queue_length(rconn, "face") == 5
    assert kombu_redis.queue_length(rconn, "detect") == 4
    assert kombu_redis.queue_length(rconn, "classify") == 0


def reserve(conn: Connection, queue: str | Queue):
    """Take one message without acking it (``basic_get``: no prefetch), like a worker does."""
    q = queue if isinstance(queue, Queue) else Queue(queue, Exchange(queue), routing_key=queue)
    msg = q(conn.default_channel).get(no_ack=False)
    assert msg is not None
    return msg


def test_in_flight_attributes_unacked_messages_to_their_queue(
    scaler_redis_url: str, rconn: redis.Redis
) -> None:
    publish(scaler_redis_url, "face", 3)
    publish(scaler_redis_url, "detect", 2)
    with Connection(scaler_redis_url) as conn:
        held = [reserve(conn, "face"), reserve(conn, "face"), reserve(conn, "detect")]
        assert rconn.hlen("unacked") == 3 and rconn.zcard("unacked_index") == 3
        assert kombu_redis.in_flight(rconn, ["face", "detect", "classify"]) == {
            "face": 2, "detect": 1, "classify": 0}
        assert kombu_redis.in_flight(rconn) == {"face": 2, "detect": 1}
        assert kombu_redis.queue_length(rconn, "face") == 1
        held[2].ack()
        assert kombu_redis.in_flight(rconn, ["face"]) == {"face": 2}
        assert kombu_redis.in_flight(rconn, ["detect"]) == {"detect": 0, "?": 2}
        for m in held[:2]:
            m.ack()
    assert kombu_redis.in_flight(rconn, ["face", "detect"]) == {"face": 0, "detect": 0}


def test_celery_producer_messages_are_seen(scaler_redis_url: str, rconn: redis.Redis) -> None:
    app = Celery("probe", broker=scaler_redis_url)
    for _ in range(4):
        app.send_task("tasks.face.detect", args=("blob-key",), queue="face")
    app.send_task("tasks.face.detect", queue="face", priority=6)
    assert kombu_redis.queue_length(rconn, "face") == 5
    with Connection(scaler_redis_url) as conn:
        msg = reserve(conn, "face")
        assert msg.headers["task"] == "tasks.face.detect"
        assert kombu_redis.in_flight(rconn, ["face"]) == {"face": 1}
        assert kombu_redis.queue_length(rconn, "face") == 4
        msg.ack()


@pytest.mark.parametrize(
    ("exchange", "routing_key", "bound", "expected"),
    [
        ("face", "face", {}, "face"),
        ("", "face", {}, "face"),  # default direct exchange routes by queue name
        ("face", "", {}, "face"),
        ("images", "hi", {("images", "hi"): "detect"}, "detect"),
        ("images", "hi", {}, None),
    ],
)
def test_attribute(exchange: str, routing_key: str, bound, expected) -> None:
    assert kombu_redis.attribute(exchange, routing_key, ["face", "detect"], bound) == expected


def test_in_flight_resolves_custom_exchanges_through_bindings(
    scaler_redis_url: str, rconn: redis.Redis
) -> None:
    ex = Exchange("images", type="direct")
    q = Queue("detect", ex, routing_key="objects")
    with Connection(scaler_redis_url) as conn:
        Producer(conn).publish({}, exchange=ex, routing_key="objects", declare=[q])
        msg = reserve(conn, q)
        assert kombu_redis.in_flight(rconn, ["face", "detect"]) == {"face": 0, "detect": 1}
        msg.ack()


def test_garbage_in_unacked_is_ignored(rconn: redis.Redis) -> None:
    rconn.hset("unacked", mapping={"a": "not json", "b": "[1]", "c": '[{}, "face", "face"]'})
    assert kombu_redis.in_flight(rconn, ["face"]) == {"face": 1}
