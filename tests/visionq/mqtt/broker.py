"""A real mosquitto for the MQTT tests: its own config (password file, persistence) in a
temporary directory, on a free loopback port, restartable on the same port; and a
subscriber that records everything it receives."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import spawn
from tests.helpers import free_port, stop_process

USER, PASSWORD = "visionq", "mqtt-s3cret-pw"


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/bin")


class Mosquitto:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        passwd = directory / "passwd"
        passwd.write_text("")
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        subprocess.run([tool, "-b", str(passwd), USER, PASSWORD], check=True,
                       capture_output=True)
        passwd.chmod(0o600)
        # persistence: sessions (the subscriber's QoS 1 queue) and retained messages
        # survive a restart, as with a Home Assistant add-on broker.
        (directory / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\n"
            f"password_file {passwd}\npersistence true\n"
            f"persistence_location {directory}/\nuser root\n")

    @property
    def url(self) -> str:
        return f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> None:
        binary = mosquitto_binary()
        assert binary is not None
        self.process = spawn(f"mosquitto-{self.port}",
                             [binary, "-c", str(self.directory / "mosquitto.conf")], {})
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """Subscribes to ``#`` with QoS 1 in a persistent session (``clean_session=False``):
    what is published while it is away (the broker restarting) is queued for it."""

    def __init__(self, broker: Mosquitto, client_id: str, clean: bool = False) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=clean)
        self.client.username_pw_set(USER, PASSWORD)
        self.client.reconnect_delay_set(1, 2)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=5)
        self.client.loop_start()
        assert self.subscribed.wait(30), "the test subscriber did not subscribe"

    def _on_message(self, _client: mqtt.Client, _userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append(Received(message.topic, message.payload, message.retain))

    def wait_for(self, match: Callable[[Received], bool], timeout_s: float = 90,
                 count: int = 1) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                found = [r for r in self.received if match(r)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                with self._lock:
                    topics = sorted({r.topic for r in self.received})
                raise AssertionError(f"{len(found)}/{count} matching messages within "
                                     f"{timeout_s:g} s; topics seen: {topics}")
            time.sleep(0.1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
