"""Latency classes (``workers.latency``): a heavy queue's worker really runs at the lower
nice value (every thread of its pool process), a latency-critical queue's worker does not."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import WorkerFactory
from tests.workers.conftest import SLEEPY
from workers.latency import is_heavy

DB = 13
"""No other test uses this Redis database: these workers take nobody's jobs."""


@pytest.fixture()
def db_url(redis_server: tuple[int, subprocess.Popen]) -> Iterator[str]:
    url = f"redis://127.0.0.1:{redis_server[0]}/{DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


def thread_nices(pid: int) -> set[int]:
    """The nice value of every thread of ``pid`` (field 19 of /proc/<pid>/task/<tid>/stat)."""
    values = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        values.add(int(fields[16]))
    return values


def pool_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.parametrize(("queues", "critical", "heavy"), [
    (["face"], ["detect"], True),
    (["detect"], ["detect"], False),
    (["detect", "face"], ["detect"], False),  # it serves a critical queue: full priority
    (["face"], [], False),  # no latency classes
    ([], ["detect"], False),
])
def test_which_workers_are_heavy(queues: list[str], critical: list[str], heavy: bool) -> None:
    assert is_heavy(queues, critical) is heavy


def test_a_heavy_queues_worker_runs_at_the_lower_nice_value(
        db_url: str, test_worker: WorkerFactory) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    heavy = test_worker(db_url, "classify", "latency-heavy", VISIONQ_MODEL_CLASSIFY=SLEEPY,
                        VISIONQ_LATENCY_QUEUES="detect", VISIONQ_HEAVY_NICE="7")
    critical = test_worker(db_url, "classify", "latency-critical",
                           VISIONQ_MODEL_CLASSIFY=SLEEPY, VISIONQ_LATENCY_QUEUES="classify",
                           VISIONQ_HEAVY_NICE="7")
    for worker, expected in ((heavy, max(7, ours)), (critical, ours)):
        children = pool_children(worker.pid)
        assert children, "the worker has a pool process"
        assert thread_nices(worker.pid) == {expected}
        for child in children:  # the process that runs the jobs, every thread of it
            assert thread_nices(child) == {expected}
