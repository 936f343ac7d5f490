"""Topic names.  What comes from users (a userid, a custom model's name) is sanitised:
MQTT gives ``+`` and ``#`` (wildcards) and ``/`` (level separator) meanings, control
characters, NUL and lone surrogates have no place in a topic, and Home Assistant's
discovery accepts only ``[A-Za-z0-9_-]`` in node and object ids.  A name that had to
change gets a short hash of the original appended, so two userids never share a topic."""

from __future__ import annotations

import hashlib
import re

SEGMENT_MAX = 64
"""Characters of a user-supplied name kept in a topic level (before the hash suffix)."""
_UNSAFE_IN_TOPIC = re.compile(r"[+#/\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Wildcards, the level separator, control characters (C0, DEL, C1; MQTT forbids NUL and
advises against the rest) and lone surrogates (not encodable as the UTF-8 MQTT requires)."""
_UNSAFE_IN_ID = re.compile(r"[^A-Za-z0-9_-]")


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _clean(name: str, unsafe: re.Pattern[str]) -> str:
    cleaned = unsafe.sub("_", name)[:SEGMENT_MAX]
    if cleaned == name and name and not name.startswith("$"):
        return name
    return f"{cleaned.lstrip('$') or '_'}-{_digest(name)}"


def segment(name: str) -> str:
    """``name`` as one topic level: unchanged when it is safe, else with its unsafe
    characters replaced by ``_`` and ``-<hash>`` appended."""
    return _clean(name, _UNSAFE_IN_TOPIC)


def object_id(name: str) -> str:
    """``name`` as a Home Assistant discovery id (``[A-Za-z0-9_-]+``), same rule."""
    return _clean(name, _UNSAFE_IN_ID)


class Topics:
    """Every topic the role publishes, under ``prefix`` (``VISIONQ_MQTT_TOPIC_PREFIX``) and
    ``discovery`` (``VISIONQ_MQTT_DISCOVERY_PREFIX``)."""

    def __init__(self, prefix: str, discovery: str, node_id: str) -> None:
        self.prefix, self.discovery, self.node_id = prefix, discovery, node_id

    @property
    def status(self) -> str:
        """``online`` (retained) while the role is connected, ``offline`` (its will)."""
        return f"{self.prefix}/status"

    def job(self, task: str, status: str) -> str:
        """``<prefix>/<task>/<status>``; a custom model's task ``custom/<name>`` keeps its
        two levels, each sanitised."""
        levels = [segment(level) for level in (task or "?").split("/", 1)]
        return "/".join([self.prefix, *levels, segment(status or "?")])

    def person(self, userid: str) -> str:
        return f"{self.prefix}/face/{segment(userid)}"

    def backlog(self, queue: str) -> str:
        return f"{self.prefix}/backlog/{segment(queue)}"

    def person_config(self, userid: str) -> str:
        return f"{self.discovery}/sensor/{self.node_id}/face_{object_id(userid)}/config"

    def backlog_config(self, queue: str) -> str:
        return f"{self.discovery}/sensor/{self.node_id}/backlog_{object_id(queue)}/config"
