"""``visionq up`` starts the MQTT role only when ``VISIONQ_MQTT_URL`` is set."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from launcher.up import Stack
from visionq.settings import Settings


def _names(tmp_path: Path) -> dict[str, list[str]]:
    stack = Stack(Settings(state_dir=str(tmp_path)), ["face", "detect"], flower=False,
                  prometheus=False, out=io.StringIO())
    return {service.name: service.command for service in stack.plan()}


def test_mqtt_role_only_with_a_broker_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.delenv("VISIONQ_MQTT_URL", raising=False)
    assert "mqtt" not in _names(tmp_path)
    monkeypatch.setenv("VISIONQ_MQTT_URL", "mqtt://user:secret@broker:1883")
    command = _names(tmp_path)["mqtt"]
    assert command[1:] == ["-m", "visionq.mqtt", "--queues", "face,detect"]
    assert not any("secret" in part for part in command)  # argv shows in `ps`
