"""The MQTT role against a real broker (mosquitto, started here) and a real stack (Redis
DB 4, the API, a face worker): what a subscriber receives.

- registering a face and recognising it publishes the person's topic and the Home
  Assistant discovery configs (checked against HA's documented fields);
- a mosquitto restart mid-run loses no result: jobs that finish while the broker is down
  are published (QoS 1) once it is back, their stream entries acknowledged only then.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import requests

from tests.conftest import FIXTURES, WorkerPool, log_tail, service_env, spawn, start_api
from tests.helpers import stop_process
from tests.visionq.mqtt.broker import PASSWORD, Mosquitto, Subscriber, mosquitto_binary
from tests.visionq.mqtt.test_discovery import check_config
from visionq.keys import HISTORY_STREAM_KEY
from visionq.mqtt.publisher import group_name
from visionq.mqtt.settings import MqttSettings
from visionq.mqtt.topics import Topics

pytestmark = pytest.mark.skipif(mosquitto_binary() is None,
                                reason="mosquitto is not installed (Debian package "
                                "mosquitto; `make system-deps` installs it)")
FACES = FIXTURES / "faces"
TOPICS = Topics("visionq", "homeassistant", "visionq")
DB = 4  # this module's own database of the session Redis (tests/conftest.py)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@dataclass
class Live:
    api: str
    redis_url: str
    subscriber: Subscriber
    broker: Mosquitto
    role: subprocess.Popen | None = None

    def start_role(self) -> None:
        self.role = spawn("mqtt-role", [sys.executable, "-m", "visionq.mqtt", "--queues",
                                        "face"],
                          service_env(self.redis_url, VISIONQ_MQTT_URL=self.broker.url,
                                      VISIONQ_MQTT_BACKLOG_INTERVAL_S="1"))

    def kill_role(self) -> None:
        """SIGKILL: no goodbye, whatever it held unacknowledged stays pending in Redis."""
        assert self.role is not None
        os.killpg(self.role.pid, signal.SIGKILL)
        self.role.wait(30)


@pytest.fixture(scope="module")
def stack(redis_server: tuple[int, subprocess.Popen], broker: Mosquitto) -> Iterator[Live]:
    """The API and a face worker on DB 4, the MQTT role publishing to ``broker``, and a
    subscriber to everything there."""
    redis_url = f"redis://127.0.0.1:{redis_server[0]}/{DB}"
    redis.Redis.from_url(redis_url).flushdb()
    subscriber = Subscriber(broker, f"test-{uuid.uuid4().hex[:8]}")
    api, api_process = start_api(redis_url, "api-mqtt")
    workers = WorkerPool()
    workers.start(redis_url, "face", "mqttface")
    live = Live(api, redis_url, subscriber, broker)
    live.start_role()
    try:
        subscriber.wait_for(lambda r: r.topic == "visionq/status" and r.payload == b"online")
        yield live
    finally:
        if live.role is not None:
            stop_process(live.role)
        stop_process(api_process)
        workers.stop_all()
        subscriber.close()
        log = log_tail("mqtt-role", 400)
        assert PASSWORD not in log, "the broker password was logged"


def _json(payload: bytes) -> dict:
    return json.loads(payload)


def test_register_and_recognise_publish_person_and_discovery(stack: Live,
                                                              broker: Mosquitto) -> None:
    api, subscriber = stack.api, stack.subscriber
    userid = f"Barack/#+{uuid.uuid4().hex[:6]}"  # every character MQTT gives a meaning
    registered = requests.post(f"{api}/v1/vision/face/register", data={"userid": userid},
                               files={"image": (FACES / "obama.jpg").read_bytes()}, timeout=60)
    assert registered.status_code == 200, registered.text
    found = requests.post(f"{api}/v1/vision/face/recognize",
                          files={"image": (FACES / "obama2.jpg").read_bytes()}, timeout=60)
    [who] = found.json()["predictions"]
    assert who["userid"] == userid

    person_topic = TOPICS.person(userid)
    assert person_topic.count("/") == 2 and "+" not in person_topic and "#" not in person_topic
    [seen] = subscriber.wait_for(lambda r: r.topic == person_topic)
    sighting = _json(seen.payload)
    assert sighting["userid"] == userid
    assert sighting["confidence"] == pytest.approx(who["confidence"], abs=1e-3)
    assert sighting["time"].endswith("+00:00") and sighting["source"].startswith("ip:")

    config_topic = TOPICS.person_config(userid)
    [config] = subscriber.wait_for(lambda r: r.topic == config_topic and r.payload != b"")
    check_config(config_topic, _json(config.payload))
    assert _json(config.payload)["state_topic"] == person_topic

    backlog_topic = TOPICS.backlog_config("face")
    [backlog] = subscriber.wait_for(lambda r: r.topic == backlog_topic)
    check_config(backlog_topic, _json(backlog.payload))
    [length] = subscriber.wait_for(lambda r: r.topic == "visionq/backlog/face", count=1)[:1]
    assert _json(length.payload)["length"] >= 0

    # Retained: Home Assistant (re)starting later gets the configs and the last sighting.
    late = Subscriber(broker, f"late-{uuid.uuid4().hex[:8]}", clean=True)
    try:
        for topic in (config_topic, person_topic, backlog_topic):
            late.wait_for(lambda r, topic=topic: r.topic == topic and r.retain)
    finally:
        late.close()

    # The recognise job itself, without its face encodings.
    jobs = subscriber.wait_for(lambda r: r.topic == "visionq/face/succeeded", count=2)
    assert all("encoding" not in json.dumps(_json(j.payload)["result"]) for j in jobs)

    # Deleted from the registry: its sensor is removed (an empty retained config).
    requests.post(f"{api}/v1/vision/face/delete", data={"userid": userid}, timeout=30)
    subscriber.wait_for(lambda r: r.topic == config_topic and r.payload == b"")


def _submit(api: str, name: str) -> str:
    response = requests.post(f"{api}/v1/jobs", params={"task": "face"},
                             data={"options": json.dumps({"encodings": True})},
                             files={"image": (FACES / name).read_bytes()}, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _wait_final(api: str, job_id: str) -> dict:
    for _ in range(60):
        job = requests.get(f"{api}/v1/jobs/{job_id}", params={"wait": 10}, timeout=40).json()
        if job["status"] in ("succeeded", "failed"):
            return job
    raise AssertionError(f"job {job_id} not final: {job}")


def test_broker_restart_loses_no_result(stack: Live, broker: Mosquitto) -> None:
    api, redis_url, subscriber = stack.api, stack.redis_url, stack.subscriber
    userid = f"obama-{uuid.uuid4().hex[:6]}"
    assert requests.post(f"{api}/v1/vision/face/register", data={"userid": userid},
                         files={"image": (FACES / "obama.jpg").read_bytes()},
                         timeout=60).status_code == 200
    before = _submit(api, "obama2.jpg")  # published while the broker is up
    subscriber.wait_for(lambda r: r.topic == "visionq/face/succeeded"
                        and _json(r.payload)["id"] == before)

    broker.stop()
    down = [_submit(api, name) for name in ("obama2.jpg", "obama3.jpg", "obama.jpg")]
    for job_id in down:
        assert _wait_final(api, job_id)["status"] == "succeeded"
    # Final in Redis, not acknowledged by the MQTT group while the broker is away.
    client = redis.Redis.from_url(redis_url)
    group = group_name(MqttSettings(url=broker.url))
    ids = {fields[b"id"].decode() for _, fields in client.xrange(HISTORY_STREAM_KEY)}
    assert set(down) <= ids
    [info] = [g for g in client.xinfo_groups(HISTORY_STREAM_KEY)
              if g["name"].decode() == group]
    assert int(info["pending"]) + int(info.get("lag") or 0) >= len(down), info

    broker.start()  # same port, same persistence: the subscriber's session is back
    got = subscriber.wait_for(lambda r: r.topic == "visionq/face/succeeded"
                              and _json(r.payload)["id"] in down, count=len(down))
    assert {_json(r.payload)["id"] for r in got} == set(down)
    people = subscriber.wait_for(lambda r: r.topic == TOPICS.person(userid)
                                 and _json(r.payload).get("job_id") in down, count=len(down))
    assert {_json(r.payload)["job_id"] for r in people} == set(down)
    requests.post(f"{api}/v1/vision/face/delete", data={"userid": userid}, timeout=30)


def test_role_killed_while_the_broker_is_down_loses_no_result(stack: Live,
                                                              broker: Mosquitto) -> None:
    """The role dies (SIGKILL) with results waiting for the broker; a new role publishes
    them once the broker is back."""
    api, subscriber = stack.api, stack.subscriber
    broker.stop()
    down = [_submit(api, name) for name in ("obama2.jpg", "biden.jpg")]
    for job_id in down:
        assert _wait_final(api, job_id)["status"] == "succeeded"
    stack.kill_role()
    stack.start_role()
    broker.start()
    got = subscriber.wait_for(lambda r: r.topic == "visionq/face/succeeded"
                              and _json(r.payload)["id"] in down, count=len(down))
    assert {_json(r.payload)["id"] for r in got} == set(down)
