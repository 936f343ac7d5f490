"""The connection to the MQTT broker (paho-mqtt, MQTT 3.1.1): connects and reconnects in
its own thread, says ``online`` (retained) on ``<prefix>/status`` on every connect and
leaves ``offline`` as its will, and tells when the broker acknowledged a QoS 1 publish
(PUBACK).  Messages published while the broker is away are kept by paho and sent when it
is back.  The password is never logged (``MqttTarget``'s repr hides it)."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from visionq.mqtt.discovery import OFFLINE, ONLINE
from visionq.mqtt.settings import MqttTarget

log = logging.getLogger("visionq.mqtt")

KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
RESEND_AFTER_S = 60.0
"""A publish still unacknowledged this long while connected is sent again (paho resends
its in-flight messages on reconnect; this covers anything lost otherwise)."""

Message = tuple[str, bytes, bool]
"""(topic, payload, retain): always published with QoS 1."""


class Broker:
    def __init__(self, target: MqttTarget, status_topic: str, client_id: str,
                 on_connect: Callable[[], None] | None = None) -> None:
        self.target = target
        self.status_topic = status_topic
        self._on_connect_hook = on_connect
        self.connected = threading.Event()
        self.connects = 0
        """Successful connections so far (a reconnect makes it grow)."""
        self._acked: dict[int, float] = {}
        """mid -> when its PUBACK came: a mid counts for a publish only if acknowledged
        after it was sent (mids are reused; the status publishes are never waited on)."""
        self._cond = threading.Condition()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(status_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    # -- paho's thread -----------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: object,
                    reason: mqtt.ReasonCode, _properties: object) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %r refused the connection: %s", self.target, reason)
            return
        self.connects += 1
        log.info("connected to the MQTT broker %r", self.target)
        client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        self.connected.set()
        if self._on_connect_hook is not None:
            self._on_connect_hook()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object,
                       reason: mqtt.ReasonCode, _properties: object) -> None:
        if self.connected.is_set():
            log.warning("lost the MQTT broker %r (%s); reconnecting", self.target, reason)
        self.connected.clear()

    def _on_publish(self, _client: mqtt.Client, _userdata: object, mid: int,
                    _reason: object, _properties: object) -> None:
        now = time.monotonic()
        with self._cond:
            self._acked[mid] = now
            if len(self._acked) > 1000:  # acknowledgements nobody waits for
                self._acked = {m: t for m, t in self._acked.items() if now - t < 300}
            self._cond.notify_all()

    # -- the caller's thread -----------------------------------------------------------
    def start(self) -> Broker:
        self._client.connect_async(self.target.host, self.target.port, KEEPALIVE_S)
        self._client.loop_start()
        return self

    def deliver(self, messages: Iterable[Message], stop: threading.Event) -> bool:
        """Publish ``messages`` (QoS 1) and wait until the broker acknowledged every one;
        False if ``stop`` was set first (the caller keeps its Redis entries pending)."""
        waiting: dict[int, tuple[Message, float]] = {}
        for message in messages:
            sent = time.monotonic()
            waiting[self._publish(message)] = (message, sent)
        while waiting:
            with self._cond:
                for mid in [m for m, (_, sent) in waiting.items()
                            if self._acked.get(m, -1.0) >= sent]:
                    del self._acked[mid]
                    del waiting[mid]
                if not waiting:
                    return True
                self._cond.wait(0.2)
            if stop.is_set():
                return False
            now = time.monotonic()
            for mid, (message, sent) in list(waiting.items()):
                if self.connected.is_set() and now - sent > RESEND_AFTER_S:
                    del waiting[mid]
                    waiting[self._publish(message)] = (message, now)
        return True

    def _publish(self, message: Message) -> int:
        topic, payload, retain = message
        return self._client.publish(topic, payload, qos=1, retain=retain).mid

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say ``offline`` (if connected) and disconnect."""
        if self.connected.is_set():
            info = self._client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            deadline = time.monotonic() + timeout_s
            while not info.is_published() and time.monotonic() < deadline:
                time.sleep(0.05)
        self._client.disconnect()
        self._client.loop_stop()
