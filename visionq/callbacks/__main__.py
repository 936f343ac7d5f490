"""``python -m visionq.callbacks``: the webhook sender role (``visionq up`` starts it; run one
or more anywhere that reaches Redis in compose or Kubernetes)."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from types import FrameType

import redis

from visionq.callbacks.destinations import AllowList, DestinationError, parse_url
from visionq.callbacks.sender import GROUP, CallbackSender
from visionq.callbacks.signing import CallbackSecrets
from visionq.keys import HISTORY_STREAM_KEY
from visionq.settings import Settings
from visionq.shards import shard_map

log = logging.getLogger("visionq.callbacks")


def build(settings: Settings) -> CallbackSender:
    """A sender for the deployment ``settings`` describe: the main Redis keeps deliveries
    and logs; every Redis jobs finish on (each shard) is read."""
    shards = shard_map(settings)
    clients = shards.clients()
    main = clients[shards.main]
    streams = [main] + [client for url, client in clients.items() if url != shards.main]
    return CallbackSender(
        main, CallbackSecrets.from_settings(settings), AllowList.parse(settings.callback_allow),
        streams=streams, global_url=settings.callback_url, retry_s=settings.callback_retry_s,
        timeout_s=settings.callback_timeout_s, concurrency=settings.callback_concurrency,
        log_ttl_s=int(max(settings.result_ttl_s, settings.callback_retry_s)) + 3600)


ALIVE_IDLE_MS = 30_000
"""A reader blocks at most ``BLOCK_MS`` per read: idle longer, it is stuck or gone."""


def alive(settings: Settings) -> bool:
    """A sender of this host (its consumer names start with the host name) read the main
    Redis's stream within ``ALIVE_IDLE_MS``."""
    shards = shard_map(settings)
    client = shards.clients()[shards.main]
    host = socket.gethostname()
    try:
        consumers = client.xinfo_consumers(HISTORY_STREAM_KEY, GROUP)
    except redis.RedisError:
        return False
    for consumer in consumers:
        name = consumer["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        if name.startswith(f"{host}-") and int(consumer["idle"]) < ALIVE_IDLE_MS:
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m visionq.callbacks",
        description="Send signed webhooks for finished jobs: every job submitted with a "
        "callback_url, and every job when VISIONQ_CALLBACK_URL is set. Reads the "
        "visionq:history stream with a consumer group of its own; retries with back-off "
        "for VISIONQ_CALLBACK_RETRY_S; destinations are checked against "
        "VISIONQ_CALLBACK_ALLOW. Configured by the VISIONQ_* environment (docs/webhooks.md); "
        "several may run at once.")
    parser.add_argument("--check", action="store_true",
                        help="Health check: exit 0 if a sender on this host read the stream "
                        "in the last 30 s, else 1 (a container's or pod's probe).")
    args = parser.parse_args(argv)
    if args.check:
        return 0 if alive(Settings()) else 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    settings = Settings()
    if settings.callback_url:
        try:
            parse_url(settings.callback_url)
        except DestinationError as exc:
            log.error("VISIONQ_CALLBACK_URL: %s", exc.message)
            return 2
    sender = build(settings).start()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("webhook sender stopping (signal %d)", signum)
        sender.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sender.wait_stopped()
    return 0


if __name__ == "__main__":
    sys.exit(main())
