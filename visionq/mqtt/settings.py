"""``VISIONQ_MQTT_*``: where and how the MQTT role publishes (``visionq.mqtt``)."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TOPIC_PREFIX = "visionq"
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
DEFAULT_NODE_ID = "visionq"
DEFAULT_BACKLOG_INTERVAL_S = 10.0
DEFAULT_MAX_PAYLOAD_BYTES = 65_536
DEFAULT_MIN_CONFIDENCE = 0.67
"""As ``/v1/vision/face/recognize``'s default ``min_confidence``."""
SCHEMES = {"mqtt": 1883, "mqtts": 8883}


def check_topic_prefix(value: str, what: str) -> str:
    """A prefix of topic levels: no wildcards, no empty level, no control characters, not
    a ``$`` system topic."""
    value = value.strip()
    if (not value or value.startswith("$") or any(c in value for c in "+#")
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
            or "" in value.split("/") or len(value) > 100):
        raise ValueError(f"{what} must be 1-100 characters of topic levels without '+', "
                         f"'#', empty levels, control characters or a leading '$' (got "
                         f"{value!r})")
    return value


def mqtt_enabled() -> bool:
    """``VISIONQ_MQTT_URL`` is set (``visionq up`` then starts the MQTT role, which reports
    a malformed one itself)."""
    return bool(os.environ.get("VISIONQ_MQTT_URL", "").strip())


class MqttTarget:
    """The broker of an ``mqtt://user:pass@host:port`` URL (``mqtts://`` for TLS)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ValueError("VISIONQ_MQTT_URL must be mqtt://[user:password@]host[:port] "
                             "or mqtts://...")
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname
        self.port = parts.port or SCHEMES[parts.scheme]
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None

    def __repr__(self) -> str:  # never the password
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


class MqttSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VISIONQ_MQTT_", extra="ignore")

    url: str = Field(default="", description=(
            "MQTT broker, `mqtt://user:password@host:1883` (`mqtts://`: TLS); set, `visionq up` "
            "starts the MQTT role."))
    topic_prefix: str = Field(default=DEFAULT_TOPIC_PREFIX,
                              description="First topic level(s) of everything published.")
    discovery_prefix: str = Field(default=DEFAULT_DISCOVERY_PREFIX,
                                  description="Home Assistant's discovery prefix.")
    node_id: str = Field(default=DEFAULT_NODE_ID, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                         description="This visionq's node id in discovery topics and "
                         "unique ids (one per visionq sharing a broker).")
    backlog_interval_s: float = Field(default=DEFAULT_BACKLOG_INTERVAL_S, ge=1, le=3600,
                                      description=(
            "Seconds between backlog publications (and checks of the face registry for people "
            "enrolled or deleted)."))
    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD_BYTES, ge=1024,
                                   le=1_048_576, description="Largest job message; a "
                                   "larger result is replaced by {\"truncated\": true}.")
    min_confidence: float = Field(default=DEFAULT_MIN_CONFIDENCE, ge=0, le=1,
                                  description="A face recognised at least this sure is "
                                  "published to its person's topic.")

    @field_validator("url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        value = value.strip()
        if value:
            MqttTarget(value)
        return value

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_topic_prefix(value, "an MQTT topic prefix")

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def target(self) -> MqttTarget:
        return MqttTarget(self.url)
