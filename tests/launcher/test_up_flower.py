"""Flower in ``visionq up``'s plan: on loopback unless basic auth is set, and then bound
where the API is, with the credentials in Flower's environment rather than its argv."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest
from pydantic import ValidationError

from launcher.up import Service, Stack
from visionq.settings import Settings

pytestmark = pytest.mark.skipif(importlib.util.find_spec("flower") is None,
                                reason="the flower extra is not installed")


def flower_service(tmp_path: Path, **settings: str) -> tuple[Stack, Service]:
    stack = Stack(Settings(state_dir=tmp_path, **settings), ["face"], prometheus=False,
                  out=io.StringIO())
    stack.services = stack.plan()
    [flower] = [s for s in stack.services if s.name == "flower"]
    return stack, flower


@pytest.mark.parametrize(("api_host", "auth", "address"), [
    ("127.0.0.1", "", "127.0.0.1"),
    ("localhost", "", "localhost"),
    ("0.0.0.0", "", "127.0.0.1"),  # no auth: never off loopback
    ("10.1.2.3", "", "127.0.0.1"),
    ("0.0.0.0", "ops:s3cret", "0.0.0.0"),
    ("10.1.2.3", "ops:s3cret,viewer:other", "10.1.2.3"),
    ("127.0.0.1", "ops:s3cret", "127.0.0.1"),
])
def test_flower_binds_off_loopback_only_with_basic_auth(
        tmp_path: Path, api_host: str, auth: str, address: str) -> None:
    stack, flower = flower_service(tmp_path, api_host=api_host, flower_basic_auth=auth)
    assert f"--address={address}" in flower.command
    assert f"--port={stack.settings.flower_port}" in flower.command
    if auth:
        assert flower.env == {"FLOWER_BASIC_AUTH": auth}
        assert not any("s3cret" in arg for arg in flower.command), "password in argv / ps"
    else:
        assert "FLOWER_BASIC_AUTH" not in flower.env
        assert not any("basic" in arg for arg in flower.command)


def test_basic_auth_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONQ_FLOWER_BASIC_AUTH", "ops:from-env")
    _, flower = flower_service(tmp_path, api_host="0.0.0.0")
    assert "--address=0.0.0.0" in flower.command
    assert flower.env["FLOWER_BASIC_AUTH"] == "ops:from-env"


@pytest.mark.parametrize("bad", ["ops", ":nouser", "ops:ok,second"])
def test_basic_auth_must_be_user_colon_password(bad: str) -> None:
    with pytest.raises(ValidationError, match="user:password"):
        Settings(flower_basic_auth=bad)


@pytest.mark.parametrize(("auth", "shown"), [
    ("", "http://127.0.0.1:5555/  (loopback only: set VISIONQ_FLOWER_BASIC_AUTH"),
    ("ops:s3cret", "http://0.0.0.0:5555/  (basic auth)"),
])
def test_banner_shows_where_flower_listens(tmp_path: Path, auth: str, shown: str) -> None:
    stack, _ = flower_service(tmp_path, api_host="0.0.0.0", flower_basic_auth=auth)
    stack._banner()
    text = stack.out.getvalue()  # type: ignore[attr-defined]
    assert shown in text
    assert "s3cret" not in text
