"""``visionq.kombu_redis``: the one product module that knows kombu's Redis layout.

Its pieces are tested against kombu's own code where they are used: queue lengths, in-flight
counts and bindings in ``tests/visionq/test_broker.py``, the envelope in
``tests/tasks/test_message.py``, claim/ack/give-back in ``tests/workers/test_claim.py``,
the exporter's reads in ``tests/monitoring/test_metrics.py``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from visionq import kombu_redis

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("api", "tasks", "workers", "autoscale", "monitoring", "visionq")
ADAPTER = ROOT / "visionq" / "kombu_redis"
KOMBU_NAMES = re.compile(
    r"unacked|_kombu\.|\\x06\\x16|\x06\x16|delivery_tag|body_encoding|global_keyprefix",
    re.IGNORECASE)
"""kombu's Redis keys (``unacked``, ``unacked_index``, ``_kombu.binding.*``), its
priority separator, its envelope's own fields and its key prefix option."""


def _product_files() -> list[Path]:
    return [path for folder in PRODUCT for path in sorted((ROOT / folder).rglob("*"))
            if path.is_file() and path.suffix in {".py", ".lua"}
            and "__pycache__" not in path.parts]


def test_only_the_adapter_names_kombus_keys() -> None:
    files = _product_files()
    assert len(files) > 100 and ADAPTER / "__init__.py" in files
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in files if ADAPTER not in path.parents
             for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if KOMBU_NAMES.search(line)]
    assert found == [], "kombu's Redis layout outside visionq/kombu_redis:\n" + "\n".join(found)


def test_the_adapter_does_name_them() -> None:
    """The pattern above matches what the adapter really writes (so the test above can
    fail)."""
    text = "\n".join(p.read_text() for p in ADAPTER.iterdir() if p.is_file())
    for name in ("unacked", "unacked_index", "_kombu.binding.", "\\x06\\x16", "delivery_tag"):
        assert KOMBU_NAMES.search(name) and name in text


def test_lua_is_loaded_from_the_files_beside_it() -> None:
    assert (ADAPTER / "claim.lua").read_text() == kombu_redis.CLAIM_SCRIPT
    assert (ADAPTER / "give_back.lua").read_text() == kombu_redis.GIVE_BACK_SCRIPT
    assert "redis.call('HSET', KEYS[3], tag" in kombu_redis.CLAIM_SCRIPT


def test_keys() -> None:
    assert kombu_redis.priority_keys("face") == [
        "face", "face\x06\x163", "face\x06\x166", "face\x06\x169"]
    assert kombu_redis.publish_key("face") == "face"
    assert kombu_redis.ack_commands("t1") == [("ZREM", "unacked_index", "t1"),
                                              ("HDEL", "unacked", "t1")]


@pytest.mark.parametrize("options", [None, {}, {"global_keyprefix": ""},
                                     {"visibility_timeout": 5}])
def test_no_key_prefix_is_accepted(options: dict | None) -> None:
    kombu_redis.check_transport_options(options)


def test_a_key_prefix_is_refused() -> None:
    with pytest.raises(kombu_redis.UnsupportedBrokerError, match="global_keyprefix='vq:'"):
        kombu_redis.check_transport_options({"global_keyprefix": "vq:"})


@pytest.mark.parametrize(("kombu_version", "celery_version", "refused"), [
    ("5.7.0", "5.7.0", None),
    ("5.7", "5.7.3", None),
    ("5.7.12", "5.7.0.post1", None),
    ("5.7.0+local", "5.7.0", None),
    ("5.8.0", "5.7.0", "kombu '5.8.0'"),
    ("5.9.0", "5.7.0", "kombu '5.9.0'"),
    ("5.10.0", "5.7.0", "kombu '5.10.0'"),  # not a string comparison
    ("6.0.0", "5.7.0", "kombu '6.0.0'"),
    ("5.6.9", "5.7.0", "kombu '5.6.9'"),
    ("5.7.0rc1", "5.7.0", "kombu '5.7.0rc1'"),  # before 5.7.0
    ("5.8.0a1", "5.7.0", "kombu '5.8.0a1'"),  # 5.8's pre-release: outside <5.8
    ("not-a-version", "5.7.0", "kombu 'not-a-version'"),
    ("", "5.7.0", "kombu ''"),
    ("5.7.0", "5.8.1", "celery '5.8.1'"),
    ("5.7.0", "5.5.0", "celery '5.5.0'"),
    ("5.9.0", "6.0.0", "kombu '5.9.0'.*; celery '6.0.0'"),
])
def test_versions(kombu_version: str, celery_version: str, refused: str | None) -> None:
    if refused is None:
        kombu_redis.check_versions(kombu_version, celery_version)
        return
    with pytest.raises(kombu_redis.UnsupportedBrokerError, match=refused) as info:
        kombu_redis.check_versions(kombu_version, celery_version)
    assert "verified against" in str(info.value) and ">=5.7,<5.8" in str(info.value)


def test_installed_versions_are_the_verified_ones() -> None:
    kombu_redis.check_installed({"visibility_timeout": 60})


def test_pyproject_pins_the_verified_range() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"kombu{kombu_redis.VERIFIED_KOMBU}" in dependencies
    assert f"celery[redis]{kombu_redis.VERIFIED_CELERY}" in dependencies
