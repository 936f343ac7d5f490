"""The queue -> Redis map (``visionq.shards``): what the environment says, the defaults,
variables that name no queue, and the broker check a worker runs at start."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from launcher.up import Stack
from visionq.settings import Settings
from visionq.shards import ShardMap, redact, shard_map, unknown_variables
from workers.commands import broker_env
from workers.shard_check import broker_mismatch

MAIN = "redis://10.0.0.1:6379/0"
SECOND = "redis://:secret@10.0.0.2:6379/0"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "VISIONQ_REDIS_URL", "VISIONQ_REDIS_URL_FACE",
                 "VISIONQ_REDIS_URL_DETECT", "VISIONQ_REDIS_URL_CLASSIFY",
                 "VISIONQ_REDIS_URL_CUSTOM"):
        monkeypatch.delenv(name, raising=False)


def env_map(monkeypatch: pytest.MonkeyPatch, **variables: str) -> ShardMap:
    monkeypatch.setenv("REDIS_URL", MAIN)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return shard_map(Settings())


def test_unset_means_the_main_redis_for_every_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    shards = env_map(monkeypatch)
    assert not shards.sharded
    assert shards.urls == (MAIN,)
    for queue in ("face", "detect", "classify", "custom", "custom/red_detector"):
        assert shards.url_for(queue) == MAIN


@pytest.mark.parametrize(("variable", "queue"), [
    ("VISIONQ_REDIS_URL_FACE", "face"),
    ("VISIONQ_REDIS_URL_DETECT", "detect"),
    ("VISIONQ_REDIS_URL_CLASSIFY", "classify"),
    ("VISIONQ_REDIS_URL_CUSTOM", "custom"),
])
def test_one_queue_on_its_own_redis(monkeypatch: pytest.MonkeyPatch, variable: str,
                                    queue: str) -> None:
    shards = env_map(monkeypatch, **{variable: SECOND})
    assert shards.sharded
    assert shards.url_for(queue) == SECOND
    assert shards.urls == (MAIN, SECOND)
    assert shards.queues_on(SECOND) == [queue]
    others = [q for q in ("face", "detect", "classify", "custom") if q != queue]
    assert shards.queues_on(MAIN) == others


def test_custom_tasks_follow_the_custom_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    shards = env_map(monkeypatch, VISIONQ_REDIS_URL_CUSTOM=SECOND)
    assert shards.url_for("custom/red_detector") == SECOND


def test_distinct_urls_once_each_main_first(monkeypatch: pytest.MonkeyPatch) -> None:
    shards = env_map(monkeypatch, VISIONQ_REDIS_URL_DETECT=SECOND,
                     VISIONQ_REDIS_URL_FACE=SECOND, VISIONQ_REDIS_URL_CLASSIFY=MAIN)
    assert shards.urls == (MAIN, SECOND)
    assert shards.queues_on(SECOND) == ["face", "detect"]
    assert "classify" not in shards.own  # the main URL spelled out is no shard


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_is_unset(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    shards = env_map(monkeypatch, VISIONQ_REDIS_URL_DETECT=blank)
    assert not shards.sharded
    assert shards.url_for("detect") == MAIN


def test_an_unknown_queue_is_ignored_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    shards = env_map(monkeypatch, VISIONQ_REDIS_URL_DETECTION=SECOND)
    assert not shards.sharded  # no crash, nothing moved
    assert unknown_variables() == ["VISIONQ_REDIS_URL_DETECTION"]
    assert unknown_variables({"VISIONQ_REDIS_URL_DETECT": SECOND, "REDIS_URL": MAIN}) == []


def test_redact_hides_passwords_in_every_part() -> None:
    assert redact(SECOND) == "redis://:***@10.0.0.2:6379/0"
    assert redact("sentinel://:pw@a:26379/0;sentinel://b:26379") == \
        "sentinel://:***@a:26379/0;sentinel://b:26379"
    assert redact(MAIN) == MAIN


@pytest.mark.parametrize(("broker", "queues", "problem"), [
    (MAIN, ["classify"], None),
    (SECOND, ["detect"], None),
    (MAIN, ["detect"], "-b \"$VISIONQ_REDIS_URL_DETECT\""),
    (SECOND, ["classify"], "-b \"$VISIONQ_REDIS_URL_CLASSIFY\""),
    (MAIN, ["classify", "detect"], "different Redis servers"),
])
def test_worker_broker_check(monkeypatch: pytest.MonkeyPatch, broker: str,
                             queues: list[str], problem: str | None) -> None:
    shards = env_map(monkeypatch, VISIONQ_REDIS_URL_DETECT=SECOND)
    found = broker_mismatch(shards, broker, queues)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
        assert "secret" not in found  # passwords never reach the log


def test_visionq_worker_points_celery_at_the_queues_redis(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env_map(monkeypatch, VISIONQ_REDIS_URL_DETECT=SECOND)
    assert broker_env(["detect"]) == {"CELERY_BROKER_URL": SECOND}
    assert broker_env(["classify", "face"]) == {}
    with pytest.raises(SystemExit) as exited:
        broker_env(["classify", "detect"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "span several Redis servers" in err and "secret" not in err


def test_up_plans_each_worker_on_its_queues_redis_and_prints_every_redis(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_map(monkeypatch, VISIONQ_REDIS_URL_DETECT=SECOND)
    out = io.StringIO()
    stack = Stack(Settings(state_dir=tmp_path), ["classify", "detect"], flower=False,
                  prometheus=False, out=out)
    stack.services = stack.plan()
    workers = {s.name: s.env for s in stack.services if s.name.startswith("worker-")}
    assert workers["worker-detect"]["CELERY_BROKER_URL"] == SECOND
    assert "CELERY_BROKER_URL" not in workers["worker-classify"]
    assert stack.env()["VISIONQ_REDIS_URL_DETECT"] == SECOND  # passed through to all
    stack._banner()
    assert "redis://:***@10.0.0.2:6379/0  (queues: detect)" in out.getvalue()
    assert "secret" not in out.getvalue()
