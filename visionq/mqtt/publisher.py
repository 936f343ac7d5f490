"""The MQTT role's loop: finished jobs from the job history stream to the broker.

The script that finishes a job appends its final record to ``visionq:history`` on the
job's queue's Redis (``visionq.jobs``).  This role reads that stream through a consumer
group of its own (``mqtt-<hash of broker and prefix>``, so the history writer, webhooks and
every broker each get every entry), publishes each entry's messages with QoS 1 and
acknowledges the entry in Redis only once the broker acknowledged all of them (PUBACK).
While the broker is away nothing is acknowledged: the entries stay in the stream (pending
or unread) and go out when it is back; the history writer's trim keeps every entry some
group has not acknowledged.  Delivery is at least once (a crash between PUBACK and XACK
publishes an entry again).  A new group starts at the stream's end: enabling MQTT does not
replay the history.

Every ``VISIONQ_MQTT_BACKLOG_INTERVAL_S`` it publishes each queue's length and brings the
Home Assistant discovery configs in line with the face registry (a sensor per enrolled
person, removed when the person is deleted); after every (re)connect it publishes all the
configs again (a broker without persistence forgets retained messages).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections.abc import Mapping, Sequence

import redis

from visionq.faces_registry import FaceRegistry
from visionq.keys import HISTORY_STREAM_KEY
from visionq.kombu_redis import queue_length
from visionq.mqtt import discovery, payloads
from visionq.mqtt.broker import Broker, Message
from visionq.mqtt.settings import MqttSettings
from visionq.mqtt.topics import Topics

log = logging.getLogger("visionq.mqtt")

BATCH = 100
"""Stream entries read (and published before one acknowledgement) at a time."""
BLOCK_MS = 1000
CLAIM_IDLE_MS = 60_000
"""Entries pending this long with another consumer of the group (a role that died) are
claimed by this one."""
CLAIM_EVERY_S = 30.0
RETRY_MAX_S = 30.0

Entry = tuple[bytes, dict[bytes, bytes]]


def group_name(settings: MqttSettings) -> str:
    target = settings.target
    key = f"{target.host}:{target.port}/{settings.topic_prefix}"
    return "mqtt-" + hashlib.sha256(key.encode()).hexdigest()[:12]


class Source:
    """The history stream of one Redis (the main one, or a queue's own shard)."""

    def __init__(self, client: redis.Redis, group: str, consumer: str) -> None:
        self.client, self.group, self.consumer = client, group, consumer
        self.own_pending = True
        """Entries of this consumer may be pending (at start: a previous run's)."""
        self.ready = False
        self.next_claim = 0.0

    def read(self, block_ms: int) -> list[Entry]:
        if not self.ready:
            try:  # "$": from now on; what finishes later waits for us in the group
                self.client.xgroup_create(HISTORY_STREAM_KEY, self.group, id="$",
                                          mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self.ready = True
        if self.own_pending:
            entries = self._read("0", None)
            self.own_pending = bool(entries)
            if entries:
                return entries
        if time.monotonic() >= self.next_claim:
            self.next_claim = time.monotonic() + CLAIM_EVERY_S
            reply = self.client.xautoclaim(HISTORY_STREAM_KEY, self.group, self.consumer,
                                           CLAIM_IDLE_MS, "0-0", count=BATCH)
            entries = [entry for entry in reply[1] if entry and entry[1]]
            if entries:
                return entries
        return self._read(">", block_ms)

    def _read(self, start: str, block_ms: int | None) -> list[Entry]:
        try:
            reply = self.client.xreadgroup(self.group, self.consumer,
                                           {HISTORY_STREAM_KEY: start}, count=BATCH,
                                           block=block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ready = False  # the stream was deleted: create the group again
            return []
        return [(i, f) for i, f in reply[0][1] if f] if reply else []

    def ack(self, entries: Sequence[Entry]) -> None:
        if entries:
            self.client.xack(HISTORY_STREAM_KEY, self.group, *[i for i, _ in entries])


class MqttPublisher:
    def __init__(self, settings: MqttSettings, broker: Broker, sources: Sequence[redis.Redis],
                 registry: FaceRegistry, queues: Mapping[str, redis.Redis],
                 consumer: str | None = None) -> None:
        """``sources``: every Redis a job can finish on (main first); ``queues``: queue
        name -> the Redis holding its messages."""
        self.settings = settings
        self.broker = broker
        self.topics = Topics(settings.topic_prefix, settings.discovery_prefix,
                             settings.node_id)
        self.group = group_name(settings)
        consumer = consumer or f"{socket.gethostname()}-{settings.node_id}"
        self.sources = [Source(client, self.group, consumer) for client in sources]
        self.registry = registry
        self.queues = dict(queues)
        self.announced: set[str] = set()
        """Userids whose discovery config is on the broker."""
        self._reannounce = threading.Event()
        self._reannounce.set()
        self._next_tick = 0.0
        self.published = 0
        """Stream entries published and acknowledged (tests, logs)."""

    def on_connect(self) -> None:
        """Called by the broker's thread on every connect: publish the configs again."""
        self._reannounce.set()

    # -- the loop ----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                self.step(stop)
                delay = 0.5
            except redis.RedisError as exc:
                log.warning("MQTT: Redis: %s; retrying in %.1f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def step(self, stop: threading.Event) -> int:
        """Publish one batch from each source (when the broker is connected); upkeep.
        Entries published and acknowledged."""
        if not self.broker.connected.wait(1.0):
            return 0
        self.upkeep(stop)
        done = 0
        block_ms = max(50, BLOCK_MS // len(self.sources))
        for source in self.sources:
            entries = source.read(block_ms)
            if not entries:
                continue
            if not self.broker.deliver(self.messages(entries), stop):
                source.own_pending = True  # read them again (and publish them again)
                return done
            source.ack(entries)
            done += len(entries)
        self.published += done
        return done

    def messages(self, entries: Sequence[Entry]) -> list[Message]:
        out: list[Message] = []
        for entry_id, raw in entries:
            fields = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
            topic = self.topics.job(fields.get("task") or "?", fields.get("status") or "?")
            out.append((topic, payloads.job_message(fields, self.settings.max_payload_bytes),
                        False))
            try:
                seen = payloads.sightings(fields, self.registry.identify,
                                          self.settings.min_confidence)
            except (ValueError, TypeError) as exc:  # a malformed encoding: the job still goes
                log.error("MQTT: cannot match the faces of job %s (entry %s): %s",
                          fields.get("id"), entry_id.decode(), exc)
                seen = {}
            for userid, sighting in seen.items():
                if userid not in self.announced:
                    out.append(self._person_config(userid))
                    self.announced.add(userid)
                out.append((self.topics.person(userid), payloads.encode(sighting), True))
        return out

    # -- upkeep ------------------------------------------------------------------------
    def upkeep(self, stop: threading.Event, force: bool = False) -> None:
        """Backlog and discovery, every ``backlog_interval_s`` and after a (re)connect."""
        now = time.monotonic()
        again = self._reannounce.is_set()
        if not (force or again or now >= self._next_tick):
            return
        self._next_tick = now + self.settings.backlog_interval_s
        self._reannounce.clear()
        messages = self._discovery(everything=again) + self._backlog()
        if not self.broker.deliver(messages, stop) and again:
            self._reannounce.set()

    def _person_config(self, userid: str) -> Message:
        return (self.topics.person_config(userid),
                payloads.encode(discovery.person_config(self.topics, userid)), True)

    def _discovery(self, everything: bool) -> list[Message]:
        users = set(self.registry.users())
        out: list[Message] = []
        if everything:
            self.announced.clear()
            out += [(self.topics.backlog_config(q),
                     payloads.encode(discovery.backlog_config(self.topics, q)), True)
                    for q in self.queues]
        for userid in sorted(users - self.announced):
            out.append(self._person_config(userid))
        for userid in sorted(self.announced - users):  # deleted: remove its sensor
            out += [(self.topics.person_config(userid), b"", True),
                    (self.topics.person(userid), b"", True)]
        if out:
            log.info("MQTT: discovery: %d people enrolled, %d configs published",
                     len(users), len(out))
        self.announced = users
        return out

    def _backlog(self) -> list[Message]:
        now = time.time()
        return [(self.topics.backlog(queue),
                 payloads.backlog_message(queue, queue_length(conn, queue), now), True)
                for queue, conn in self.queues.items()]
