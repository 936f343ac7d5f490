"""kombu's Redis transport as visionq uses it: the one module that knows its layout.

Everything below is kombu's (``kombu/transport/redis.py``), verified against the versions
in ``VERIFIED_KOMBU`` / ``VERIFIED_CELERY`` (pinned in ``pyproject.toml``); the worker and
the API refuse to start outside them (``check_versions``) and with a ``global_keyprefix``
(``check_transport_options``), since every key here is written without one.  Each piece is
tested against kombu's own code (``tests/visionq/test_kombu_redis.py`` and the tests named
there).

* A queue is a Redis list named after it (``LPUSH`` on publish, ``BRPOP`` on consume).
* With priorities configured, messages of priority step ``p`` (``priority_steps =
  [0, 3, 6, 9]``) go to ``f"{queue}\\x06\\x16{p}"`` (``Channel.sep``); step 0 is the
  bare name. ``Channel._size`` sums ``LLEN`` over all four; so do we.
* A message is kombu's JSON envelope (``envelope``): a base64 body, headers, properties
  with ``delivery_info`` and a ``delivery_tag``.
* Delivered but not yet acknowledged messages (ack emulation, the default) are in the
  hash ``unacked`` (field: delivery tag, value: JSON ``[raw_message, exchange,
  routing_key]``) indexed by the sorted set ``unacked_index`` (score: delivery time);
  ``QoS.ack`` removes both (``ack_commands``), the visibility sweep restores from them.
  Claiming (``workers.claim``) writes and restores the same entries (``claim.lua``,
  ``give_back.lua``, beside this module).
* Bindings: the set ``_kombu.binding.<exchange>`` holds
  ``"<routing_key>\\x06\\x16<pattern>\\x06\\x16<queue>"`` members.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import celery
import kombu
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version
from redis import Redis

from visionq.broker import Command

VERIFIED_KOMBU = ">=5.7,<5.8"
"""kombu versions this layout was verified against (pyproject pins the same range;
``tests/visionq/test_kombu_redis.py`` checks they agree)."""
VERIFIED_CELERY = ">=5.7,<5.8"
"""Celery versions (its task protocol 2, as ``envelope`` wraps it)."""

KEY_PREFIX = ""
"""kombu's ``global_keyprefix``: none (``check_transport_options`` refuses one)."""
SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_KEY = KEY_PREFIX + "unacked"
UNACKED_INDEX_KEY = KEY_PREFIX + "unacked_index"
BINDING_PREFIX = KEY_PREFIX + "_kombu.binding."
RESTORE_INTERVAL_S = 5
"""How often kombu sweeps ``unacked`` for messages of vanished workers (its default is
~100 s)."""

_HERE = Path(__file__).parent
CLAIM_SCRIPT = (_HERE / "claim.lua").read_text()
GIVE_BACK_SCRIPT = (_HERE / "give_back.lua").read_text()


class UnsupportedBrokerError(RuntimeError):
    """The installed kombu/Celery, or the broker's options, are not what this module was
    verified against: starting would write keys kombu does not read."""


# -- versions and options: checked when a worker or the API starts ----------------------


def _in_range(name: str, version: str, verified: str) -> str | None:
    """Why ``version`` of ``name`` is refused (``None``: in range).  A pre-release counts
    as its release's (5.8.0rc1 is outside ``<5.8``, as PEP 440 has it)."""
    try:
        ok = Version(version) in SpecifierSet(verified, prereleases=True)
    except InvalidVersion:
        ok = False
    if ok:
        return None
    return (f"{name} {version!r} is installed, but visionq's broker adapter "
            f"(visionq.kombu_redis, which writes kombu's Redis keys itself) was verified "
            f"against {name}{verified} only: install a version in that range (pyproject.toml "
            f"pins it), or re-verify the adapter against {name} {version}")


def check_versions(kombu_version: str, celery_version: str) -> None:
    """Raise ``UnsupportedBrokerError`` unless both versions are in the verified ranges."""
    problems = [p for p in (_in_range("kombu", kombu_version, VERIFIED_KOMBU),
                            _in_range("celery", celery_version, VERIFIED_CELERY)) if p]
    if problems:
        raise UnsupportedBrokerError("; ".join(problems))


def check_transport_options(options: Mapping[str, Any] | None) -> None:
    """Raise ``UnsupportedBrokerError`` on a ``global_keyprefix`` (every key here is
    written without one)."""
    prefix = (options or {}).get("global_keyprefix")
    if prefix:
        raise UnsupportedBrokerError(
            f"broker_transport_options sets global_keyprefix={prefix!r}, but visionq writes "
            "kombu's keys (queues, unacked, bindings) without a prefix: remove it (to share "
            "a Redis, give visionq its own database number instead)")


def check_installed(transport_options: Mapping[str, Any] | None = None) -> None:
    """``check_versions`` on the installed kombu and Celery, and ``check_transport_options``:
    what a worker and the API run at start."""
    check_versions(kombu.__version__, celery.__version__)
    check_transport_options(transport_options)


def transport_options(visibility_timeout_s: int) -> dict[str, Any]:
    """kombu's Redis transport options for the layout above: a message comes back after
    ``visibility_timeout_s`` unacknowledged, swept every ``RESTORE_INTERVAL_S``."""
    return {"visibility_timeout": visibility_timeout_s,
            "unacked_restore_interval": RESTORE_INTERVAL_S,
            "unacked_restore_throttle": 1}


# -- queues -----------------------------------------------------------------------------


def priority_keys(queue: str) -> list[str]:
    """All Redis lists that hold ``queue``'s messages, bare name first."""
    return [KEY_PREFIX + (queue if p == 0 else f"{queue}{SEP}{p}") for p in PRIORITY_STEPS]


def publish_key(queue: str) -> str:
    """The list a priority-0 message of ``queue`` is pushed onto (kombu's ``_q_for_pri``)."""
    return priority_keys(queue)[0]


def length_commands(queue: str) -> list[Command]:
    """What ``queue_length`` sends, for a caller's own pipeline: sum the replies."""
    return [("LLEN", key) for key in priority_keys(queue)]


def queue_length(conn: Redis, queue: str) -> int:
    """Messages waiting in ``queue`` (all priority sub-queues)."""
    pipe = conn.pipeline(transaction=False)
    for command in length_commands(queue):
        pipe.execute_command(*command)
    return sum(int(n) for n in pipe.execute())


def oldest_message_ids(conn: Redis, queue: str) -> list[str]:
    """The task id (``headers.id``: the job id) of the message consumed next from each of
    ``queue``'s priority lists that holds one (kombu publishes with ``LPUSH`` and consumes
    with ``BRPOP``: the oldest is the last element)."""
    pipe = conn.pipeline(transaction=False)
    for key in priority_keys(queue):
        pipe.lindex(key, -1)
    return [i for i in (_message_id(raw) for raw in pipe.execute() if raw) if i]


def _message_id(raw: bytes | str) -> str | None:
    try:
        return str(json.loads(raw)["headers"]["id"])
    except (ValueError, TypeError, KeyError):
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- the envelope -------------------------------------------------------------------------


class TaskMessage(Protocol):
    """What Celery's ``app.amqp.as_task_v2`` returns (its ``task_message``)."""

    headers: dict[str, Any]
    properties: dict[str, Any]
    body: Any


def envelope(message: TaskMessage, queue: str) -> tuple[str, bytes]:
    """``(list key, payload)``: the bytes kombu's Redis transport ``LPUSH``-es when Celery
    publishes ``message`` directly to ``queue`` at priority 0 (JSON, base64 body)."""
    body = json.dumps(message.body, separators=(", ", ": ")).encode()
    payload = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": message.headers,
        "properties": {
            **message.properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return publish_key(queue), json.dumps(payload).encode()


# -- in flight: delivered, not yet acknowledged ------------------------------------------


def bindings(conn: Redis, exchanges: Iterable[str]) -> dict[tuple[str, str], str]:
    """``(exchange, routing_key) -> queue`` from kombu's binding sets."""
    out: dict[tuple[str, str], str] = {}
    for exchange in set(exchanges):
        for member in conn.smembers(BINDING_PREFIX + exchange):
            parts = _text(member).split(SEP)
            if len(parts) == 3:
                out[(exchange, parts[0])] = parts[2]
    return out


def attribute(
    exchange: str, routing_key: str, queues: Iterable[str],
    bound: Mapping[tuple[str, str], str] | None = None,
) -> str | None:
    """Which of ``queues`` an unacknowledged message came from, or ``None``.

    Celery's default per-queue exchange has the queue's name and routing key; the
    default direct exchange ``""`` routes by queue name; anything else is resolved
    through kombu's bindings.
    """
    names = set(queues)
    if bound and (exchange, routing_key) in bound and bound[(exchange, routing_key)] in names:
        return bound[(exchange, routing_key)]
    if routing_key in names:
        return routing_key
    if exchange in names:
        return exchange
    return None


def _routing(payload: bytes | str) -> tuple[str, str] | None:
    try:
        raw: Any = json.loads(payload)
        exchange, routing_key = raw[1], raw[2]
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    return str(exchange or ""), str(routing_key or "")


def in_flight(conn: Redis, queues: Iterable[str] | None = None) -> dict[str, int]:
    """Unacknowledged messages per queue.

    With ``queues`` given, every one appears (0 if none) and messages for other queues
    are counted under ``"?"`` only if any; without, the routing key is taken as the name.
    """
    wanted = list(queues) if queues is not None else None
    routes = [r for r in (_routing(v) for v in conn.hvals(UNACKED_KEY)) if r is not None]
    bound = bindings(conn, {ex for ex, _ in routes if ex}) if wanted is not None else None
    counts: dict[str, int] = dict.fromkeys(wanted or [], 0)
    for exchange, routing_key in routes:
        if wanted is None:
            name: str | None = routing_key or exchange
        else:
            name = attribute(exchange, routing_key, wanted, bound)
        key = name if name is not None else "?"
        counts[key] = counts.get(key, 0) + 1
    return counts


def ack_commands(tag: str) -> list[Command]:
    """What acknowledges the message ``tag`` (kombu's ``QoS.ack``), to be pipelined."""
    return [("ZREM", UNACKED_INDEX_KEY, tag), ("HDEL", UNACKED_KEY, tag)]


def claim_command(job_key: str, finished_at: str, queue: str, ledger_key: str,
                  task_name: str, most: int, concurrency: int, ttl_s: int, now: float,
                  busy: tuple[str, str, float] | None = None) -> Command:
    """``claim.lua`` as one command (``EVAL``, not ``EVALSHA``: a script missing from
    Redis's cache could not be loaded and retried inside a pipeline): up to ``most`` of
    ``queue``'s messages of ``task_name``, delivered as kombu delivers them and noted in
    ``ledger_key``, if ``job_key``'s finish wrote ``finished_at``."""
    keys = [job_key, publish_key(queue), UNACKED_KEY, UNACKED_INDEX_KEY, ledger_key]
    args = [finished_at, str(most), str(max(1, concurrency)), task_name,
            str(max(1, ttl_s)), repr(now)]
    if busy is not None:
        keys.append(busy[0])
        args += [busy[1], repr(busy[2])]
    return ("EVAL", CLAIM_SCRIPT, str(len(keys)), *keys, *args)


def give_back(client: Redis, queue: str, ledger_key: str, busy_key: str, busy_member: str,
              tags: Sequence[str] = ()) -> int:
    """``give_back.lua``: claimed messages (``tags``, else all ``ledger_key`` holds) back
    from kombu's unacked entries to the head of ``queue`` (consumed next); ``busy_member``
    (``''``: none) leaves ``busy_key``.  How many went back."""
    keys = [publish_key(queue), UNACKED_KEY, UNACKED_INDEX_KEY, ledger_key, busy_key]
    return int(client.eval(GIVE_BACK_SCRIPT, len(keys), *keys, busy_member, *tags))
