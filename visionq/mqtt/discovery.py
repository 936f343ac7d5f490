"""Home Assistant MQTT discovery: retained configs under
``<discovery prefix>/sensor/<node id>/<object id>/config`` that make Home Assistant create
the sensors itself, no YAML (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery,
fields of https://www.home-assistant.io/integrations/sensor.mqtt/).

- a "<userid> last seen" sensor per enrolled person: ``device_class: timestamp``, its
  state the ``time`` of the person's latest sighting on ``<prefix>/face/<userid>``, the
  rest of that message (confidence, source, job id, box) as attributes;
- a "<queue> backlog" sensor per queue: the queue's length (``state_class: measurement``).

All belong to one device (``visionq``, or ``VISIONQ_MQTT_NODE_ID``) and are unavailable
while the role is not connected (its will sets ``<prefix>/status`` to ``offline``).
An empty retained config removes a sensor (a person deleted from the registry)."""

from __future__ import annotations

from typing import Any

from visionq import __version__
from visionq.mqtt.topics import Topics, object_id

ONLINE, OFFLINE = "online", "offline"


def device(node_id: str) -> dict[str, Any]:
    return {"identifiers": [f"visionq_{node_id}"], "name": f"visionq {node_id}"
            if node_id != "visionq" else "visionq", "manufacturer": "visionq",
            "model": "image inference queue", "sw_version": __version__}


def _common(topics: Topics, state_topic: str) -> dict[str, Any]:
    return {"state_topic": state_topic, "json_attributes_topic": state_topic,
            "availability_topic": topics.status, "payload_available": ONLINE,
            "payload_not_available": OFFLINE, "qos": 1, "device": device(topics.node_id)}


def person_config(topics: Topics, userid: str) -> dict[str, Any]:
    return {"name": f"{userid} last seen",
            "unique_id": f"{topics.node_id}_face_{object_id(userid)}",
            "device_class": "timestamp", "value_template": "{{ value_json.time }}",
            "icon": "mdi:face-recognition", **_common(topics, topics.person(userid))}


def backlog_config(topics: Topics, queue: str) -> dict[str, Any]:
    return {"name": f"{queue} backlog",
            "unique_id": f"{topics.node_id}_backlog_{object_id(queue)}",
            "unit_of_measurement": "jobs", "state_class": "measurement",
            "value_template": "{{ value_json.length }}", "icon": "mdi:tray-full",
            **_common(topics, topics.backlog(queue))}
