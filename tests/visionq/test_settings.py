"""Settings read in one place: defaults, environment variables and who uses them (the CLI
client, ``visionq up``'s choice of Redis, the detect weights folder, the worker's id)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from launcher.up import make_stack
from visionq.cli import _client
from visionq.settings import DEFAULT_API_URL, ClientSettings, Settings
from workers import weights


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VISIONQ_URL", "VISIONQ_API_KEY", "VISIONQ_INSTANCE_ID", "VISIONQ_MODELS_DIR",
                 "XDG_CACHE_HOME", "REDIS_URL", "VISIONQ_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("env", "flag", "url", "auth"), [
    ({}, None, DEFAULT_API_URL, None),
    ({"VISIONQ_URL": "http://api:9000/"}, None, "http://api:9000", None),
    ({"VISIONQ_URL": "http://api:9000"}, "http://other:1", "http://other:1", None),
    ({"VISIONQ_API_KEY": "k1"}, None, DEFAULT_API_URL, "Bearer k1"),
])
def test_cli_client_settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                             flag: str | None, url: str, auth: str | None) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = _client(flag)
    assert client.base_url == url
    assert client.session.headers.get("Authorization") == auth


def test_client_settings_do_not_need_the_services() -> None:
    assert ClientSettings().model_dump() == {"url": DEFAULT_API_URL, "api_key": None}


def test_instance_id_defaults_to_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().instance_id == socket.gethostname()
    monkeypatch.setenv("VISIONQ_INSTANCE_ID", "i-0123456789abcdef0")
    assert Settings().instance_id == "i-0123456789abcdef0"


@pytest.mark.parametrize(("env", "expected"), [
    ({}, Path.home() / ".cache" / "visionq" / "models"),
    ({"XDG_CACHE_HOME": "/var/cache/me"}, Path("/var/cache/me/visionq/models")),
    ({"XDG_CACHE_HOME": "/var/cache/me", "VISIONQ_MODELS_DIR": "/opt/models"},
     Path("/opt/models")),
])
def test_models_dir(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                    expected: Path) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().models_dir == expected
    assert weights.DETECT.model_dir() == expected / weights.DETECT.dir_name
    assert weights.DETECT.model_dir(Path("/x")) == Path("/x") / weights.DETECT.dir_name


@pytest.mark.parametrize(("env", "external"), [
    ({}, False),
    ({"REDIS_URL": ""}, False),
    ({"REDIS_URL": "redis://10.0.0.5:6379/0"}, True),
    ({"VISIONQ_REDIS_URL": "redis://10.0.0.5:6379/0"}, True),
])
def test_up_embeds_redis_unless_one_is_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             env: dict[str, str], external: bool) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(state_dir=tmp_path / "state", redis_port=6390)
    stack = make_stack(settings, ["face"])
    if external:
        assert stack.embedded_redis_port is None
        assert stack.env()["REDIS_URL"] == "redis://10.0.0.5:6379/0"
    else:
        assert stack.embedded_redis_port == 6390
        assert stack.env()["REDIS_URL"] == "redis://127.0.0.1:6390/0"
