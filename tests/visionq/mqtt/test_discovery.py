"""Home Assistant discovery configs follow HA's documented MQTT sensor fields and topic
format (``ha_mqtt_sensor_fields.json``, written from HA's documentation; sources in it)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from visionq.mqtt.discovery import backlog_config, person_config
from visionq.mqtt.topics import Topics

SPEC = json.loads((Path(__file__).parent / "ha_mqtt_sensor_fields.json").read_text())
TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "boolean": bool, "map": dict, "list": list}
TOPICS = Topics("visionq", "homeassistant", "visionq")


def _check(value: Any, rule: dict[str, Any], where: str) -> None:
    kinds = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
    assert isinstance(value, tuple(TYPES[k] for k in kinds)), f"{where}: {value!r}"
    if "values" in rule:
        assert value in rule["values"], f"{where}: {value!r} not in {rule['values']}"


def check_config(topic: str, config: dict[str, Any]) -> None:
    assert re.match(SPEC["topic_pattern"], topic), topic
    fields = SPEC["fields"]
    unknown = set(config) - set(fields)
    assert not unknown, f"fields Home Assistant does not document: {unknown}"
    for name, rule in fields.items():
        if rule.get("required"):
            assert name in config, f"{name} is required"
        if name in config:
            _check(config[name], rule, name)
    if "device" in config:
        assert "unique_id" in config  # HA ties a device only to entities with unique_id
        device = config["device"]
        assert set(device) <= set(SPEC["device_fields"]), set(device)
        for name, value in device.items():
            _check(value, SPEC["device_fields"][name], f"device.{name}")


@pytest.mark.parametrize("userid", ["alice", "a/b+#", "Zoë"])
def test_person_config(userid: str) -> None:
    config = person_config(TOPICS, userid)
    check_config(TOPICS.person_config(userid), config)
    assert config["device_class"] == "timestamp"
    assert config["state_topic"] == config["json_attributes_topic"] == TOPICS.person(userid)
    assert config["value_template"] == "{{ value_json.time }}"
    assert config["availability_topic"] == "visionq/status"


def test_backlog_config() -> None:
    config = backlog_config(TOPICS, "face")
    check_config(TOPICS.backlog_config("face"), config)
    assert config["state_topic"] == "visionq/backlog/face"
    assert config["state_class"] == "measurement"


def test_unique_ids_differ() -> None:
    ids = {person_config(TOPICS, u)["unique_id"] for u in ("a/b", "a_b", "a+b")}
    ids |= {backlog_config(TOPICS, q)["unique_id"] for q in ("face", "detect")}
    assert len(ids) == 5


def test_the_checker_catches_a_wrong_config() -> None:
    with pytest.raises(AssertionError):
        check_config(TOPICS.person_config("a"), {"name": "x"})  # no state_topic
    with pytest.raises(AssertionError):
        check_config(TOPICS.person_config("a"), {"state_topic": "t", "stat_t_typo": "t"})
    with pytest.raises(AssertionError):
        check_config("homeassistant/sensor/visionq/a b/config", {"state_topic": "t"})
    with pytest.raises(AssertionError):
        check_config(TOPICS.person_config("a"), {"state_topic": "t", "qos": "1"})
