"""``python -m visionq.mqtt``: publish finished jobs, recognised people and queue backlogs
to the MQTT broker of ``VISIONQ_MQTT_URL``, with Home Assistant discovery (started by
``visionq up`` when that variable is set)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from pydantic import ValidationError

from visionq.faces_registry import FaceRegistry, policy_from
from visionq.mqtt.settings import MqttSettings
from visionq.mqtt.topics import Topics
from visionq.redis_conn import redis_client
from visionq.settings import QUEUES, Settings
from visionq.shards import shard_map

try:  # paho-mqtt, the mqtt extra: main() says so when it is missing
    from visionq.mqtt.broker import Broker
    from visionq.mqtt.publisher import MqttPublisher
except ImportError as exc:
    MISSING_EXTRA: ImportError | None = exc
else:
    MISSING_EXTRA = None

log = logging.getLogger("visionq.mqtt")


def _settings_error(exc: ValidationError) -> str:
    """The problems without the values given (a broker URL holds a password)."""
    return "; ".join(f"VISIONQ_MQTT_{'.'.join(str(p) for p in e['loc']).upper()}: "
                     f"{e['msg']}" for e in exc.errors(include_input=False, include_url=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m visionq.mqtt", description=(__doc__ or "").split("\n\n")[0],
        epilog="Configured by VISIONQ_MQTT_* (docs/mqtt.md).")
    parser.add_argument("--queues", default=",".join(QUEUES),
                        help="queues whose backlog is published (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        mqtt_settings = MqttSettings()
    except ValidationError as exc:
        print(f"visionq mqtt: {_settings_error(exc)}", file=sys.stderr)
        return 2
    if not mqtt_settings.enabled:
        print("visionq mqtt: VISIONQ_MQTT_URL is not set: nothing to do", file=sys.stderr)
        return 2
    if MISSING_EXTRA is not None:
        print(f"visionq mqtt: {MISSING_EXTRA}: install the mqtt extra "
              "(pip install 'visionq[mqtt]')", file=sys.stderr)
        return 2
    settings = Settings()
    shards = shard_map(settings)
    queues = [q for q in args.queues.split(",") if q]
    topics = Topics(mqtt_settings.topic_prefix, mqtt_settings.discovery_prefix,
                    mqtt_settings.node_id)
    client_id = f"visionq-{mqtt_settings.node_id}-{os.getpid()}"
    publisher_box: list[MqttPublisher] = []  # the broker's connect hook calls it
    broker = Broker(mqtt_settings.target, topics.status, client_id,
                    on_connect=lambda: publisher_box and publisher_box[0].on_connect())
    publisher = MqttPublisher(
        mqtt_settings, broker, [redis_client(url) for url in shards.urls],
        FaceRegistry(redis_client(shards.main), policy=policy_from(settings)),
        {queue: shards.client_for(queue) for queue in queues})
    publisher_box.append(publisher)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("publishing to %r under %s/ (consumer group %s, discovery under %s/)",
             mqtt_settings.target, mqtt_settings.topic_prefix, publisher.group,
             mqtt_settings.discovery_prefix)
    broker.start()
    try:
        publisher.run(stop)
    finally:
        broker.stop()
        log.info("stopped after publishing %d finished jobs", publisher.published)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
