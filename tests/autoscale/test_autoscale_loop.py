"""The control loop end to end: real valkey, local stand-in workers or moto's Auto Scaling."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import pytest
import redis

from autoscale.backends.local import LocalBackend
from autoscale.loop import Controller, main
from autoscale.policy import Policy, PoolPolicy
from visionq import broker

WAIT_S = 120.0
"""Bound of the waits below; each returns as soon as its condition holds."""
IDLE_WORKER = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
               "print('up', flush=True); time.sleep(60)")


def fill(conn: redis.Redis, queue: str, n: int) -> None:
    conn.lpush(queue, *[b"{}"] * n)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def test_tick_scales_a_local_pool_up_and_back_down(rconn: redis.Redis) -> None:
    fill(rconn, "face", 20)
    broker.record_service_time(rconn, "face", 1.0, now=1_000.0)
    clock = Clock()
    backend = LocalBackend(["face"], command=[sys.executable, "-c", IDLE_WORKER])
    policy = Policy(default=PoolPolicy(target_backlog_seconds=10, boot_seconds=0,
                                       stabilization_seconds=60, max_step_down=5))
    ctl = Controller(rconn, backend, ["face"], policy, clock=clock)
    try:
        d = ctl.tick()
        assert d.desired == {"face": 2}  # 20 tasks x 1 s / 10 s per worker
        assert backend.current()["face"].current == 2
        rconn.delete("face")
        clock.t += 30
        assert ctl.tick().desired == {"face": 2}  # inside the stabilisation window
        clock.t += 31
        assert ctl.tick().desired == {"face": 0}
        cap = backend.current()["face"]
        assert cap.current == 0
        for w in list(backend.workers):
            # SIGTERM (handled, or before the stand-in installed its handler), never SIGKILL
            assert w.proc.wait(timeout=WAIT_S) in (0, -signal.SIGTERM)
    finally:
        assert backend.close(timeout=WAIT_S) == []


def test_tick_keeps_workers_holding_in_flight_work(rconn: redis.Redis) -> None:
    clock = Clock()
    backend = LocalBackend(["face"], command=[sys.executable, "-c", IDLE_WORKER])
    ctl = Controller(rconn, backend, ["face"],
                     Policy(default=PoolPolicy(stabilization_seconds=0, max_step_down=10)),
                     clock=clock)
    try:
        backend.apply({"face": 3})
        for i in range(2):  # two reserved, unacked tasks
            rconn.hset("unacked", f"t{i}", '[{"body": ""}, "face", "face"]')
        d = ctl.tick()
        assert d.desired == {"face": 2}
        assert "in-flight" in d.reasons["face"]
    finally:
        backend.close(timeout=WAIT_S)


def test_dry_run_once_logs_and_changes_nothing(
    scaler_redis_url: str, rconn: redis.Redis, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    fill(rconn, "face", 5)
    marker = tmp_path / "started"
    cmd = f"{sys.executable} -c 'open(\"{marker}\", \"w\")'"
    with caplog.at_level(logging.INFO, logger="visionq.autoscale"):
        assert main(["--once", "--dry-run", "--redis-url", scaler_redis_url, "--queues", "face",
                     "--worker-command", cmd]) == 0
    assert any("[dry-run] face: scale up 0 -> 1" in r.getMessage() for r in caplog.records)
    assert not marker.exists()


def test_redis_url_defaults_to_the_services_setting(
    scaler_redis_url: str, rconn: redis.Redis, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --redis-url the autoscaler reads REDIS_URL like the API and the workers."""
    fill(rconn, "face", 5)
    monkeypatch.delenv("VISIONQ_REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", scaler_redis_url)
    with caplog.at_level(logging.INFO, logger="visionq.autoscale"):
        assert main(["--once", "--dry-run", "--queues", "face"]) == 0
    assert any("[dry-run] face: scale up 0 -> 1" in r.getMessage() for r in caplog.records)


def test_ec2_once_sets_capacity_and_protection(
    scaler_redis_url: str, rconn: redis.Redis, scaler_moto_url: str, asg
) -> None:
    client, group = asg
    fill(rconn, "face", 30)
    broker.record_service_time(rconn, "face", 2.0)
    argv = ["--backend", "ec2", "--once", "--redis-url", scaler_redis_url, "--queues", "face",
            "--asg", f"face={group}", "--endpoint-url", scaler_moto_url, "--region", "us-east-1",
            "--target-backlog-seconds", "20", "--lifecycle-hook"]
    assert main(argv) == 0
    g = client.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    assert g["DesiredCapacity"] == 3  # 30 x 2 s / 20 s
    assert client.describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"]
    busy = g["Instances"][0]["InstanceId"]
    broker.mark_busy(rconn, busy, "task-1")
    assert main(argv) == 0
    g = client.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    assert {i["InstanceId"] for i in g["Instances"] if i["ProtectedFromScaleIn"]} == {busy}


def test_run_stops_on_event(rconn: redis.Redis) -> None:
    backend = LocalBackend(["face"], command=[sys.executable, "-c", IDLE_WORKER])
    ctl = Controller(rconn, backend, ["face"], Policy())
    stop = threading.Event()
    t = threading.Thread(target=ctl.run, args=(0.05, stop))
    t.start()
    stop.set()
    t.join(timeout=WAIT_S)
    assert not t.is_alive()


@pytest.mark.parametrize("argv", [["--help"], ["--backend", "gcp"]])
def test_cli_help_and_bad_args(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == (0 if argv == ["--help"] else 2)


def test_cli_rejects_bad_policy(scaler_redis_url: str) -> None:
    with pytest.raises(SystemExit, match="invalid policy"):
        main(["--once", "--redis-url", scaler_redis_url, "--min", "5", "--max", "2"])


def test_decisions_are_published_as_gauges(scaler_redis_url: str) -> None:
    import redis
    import requests

    from autoscale.backends.local import LocalBackend
    from autoscale.loop import Controller, publish_metrics
    from autoscale.policy import Policy
    from tests.conftest import free_port

    port = free_port()
    conn = redis.Redis.from_url(scaler_redis_url)
    conn.rpush("face", b"{}")  # one waiting message: scale from zero to one
    controller = Controller(conn, LocalBackend(["face"]), ["face"], Policy(), dry_run=True,
                            on_decision=publish_metrics(port))
    controller.tick()
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'visionq_autoscale_workers_desired{queue_name="face"} 1.0' in text
    assert 'visionq_autoscale_workers_current{queue_name="face"} 0.0' in text
