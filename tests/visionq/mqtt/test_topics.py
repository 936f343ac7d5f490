"""Topic names: user-supplied names cannot add levels, wildcards or control characters,
and two different userids never share a topic."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from visionq.mqtt.settings import MqttSettings, MqttTarget
from visionq.mqtt.topics import SEGMENT_MAX, Topics, object_id, segment

SAFE_LEVEL = re.compile(r"^[^+#/\x00-\x1f\x7f-\x9f]+$")
HA_ID = re.compile(r"^[A-Za-z0-9_-]+$")
TOPICS = Topics("visionq", "homeassistant", "visionq")


@pytest.mark.parametrize("userid", ["alice", "Bob Smith", "émilie", "o'brien"])
def test_safe_userids_are_kept(userid: str) -> None:
    assert TOPICS.person(userid) == f"visionq/face/{userid}"


@pytest.mark.parametrize("userid", ["a/b", "a+b", "#", "+", "x\x00y", "new\nline", "", "$SYS",
                                    "a" * 300, "\x7f", "\x85", "\ud800"])
def test_unsafe_userids_are_one_clean_level(userid: str) -> None:
    topic = TOPICS.person(userid)
    level = topic.removeprefix("visionq/face/")
    assert SAFE_LEVEL.match(level), topic
    assert not level.startswith("$") and len(level) <= SEGMENT_MAX + 9
    assert HA_ID.match(TOPICS.person_config(userid).split("/")[3])


@given(st.text(max_size=80), st.text(max_size=80))
def test_different_userids_different_topics(first: str, second: str) -> None:
    if first != second:
        assert segment(first) != segment(second)
        assert object_id(first) != object_id(second)


@given(st.text(max_size=80))
def test_any_userid_gives_valid_levels(userid: str) -> None:
    assert SAFE_LEVEL.match(segment(userid))
    segment(userid).encode("utf-8")  # MQTT topics are UTF-8: no lone surrogates
    assert HA_ID.match(object_id(userid))


def test_job_topics() -> None:
    assert TOPICS.job("face", "succeeded") == "visionq/face/succeeded"
    assert TOPICS.job("custom/my+model", "failed").startswith("visionq/custom/my_model-")
    assert TOPICS.job("custom/a/b", "failed").count("/") == 3  # the name stays one level


@pytest.mark.parametrize("prefix", ["", "a/#", "+", "a//b", "/a", "$SYS/x", "a\x00", "a\nb"])
def test_bad_prefixes_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        MqttSettings(topic_prefix=prefix)
    with pytest.raises(ValueError):
        MqttSettings(discovery_prefix=prefix)


def test_url_parsed_and_password_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONQ_MQTT_URL", "mqtt://ha%20user:s3cr%40t@broker.lan")
    target = MqttSettings().target
    assert (target.host, target.port, target.username, target.password) == (
        "broker.lan", 1883, "ha user", "s3cr@t")
    assert "s3cr" not in repr(target) and "s3cr" not in str(target)
    assert MqttTarget("mqtts://h").port == 8883
    monkeypatch.setenv("VISIONQ_MQTT_URL", "http://u:pw@h")
    with pytest.raises(ValueError):
        MqttSettings()


def test_role_names_a_bad_url_without_its_password(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from visionq.mqtt.__main__ import main

    monkeypatch.setenv("VISIONQ_MQTT_URL", "http://user:hunter2-pw@broker:1883")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "VISIONQ_MQTT_URL" in err and "hunter2" not in err
