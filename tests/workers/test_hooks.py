"""The worker hooks in this process: the fan-out, model loading, heartbeats with the lost-
message sweep, the autoscaler's hints, and the bridge from Celery's signals."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery.exceptions import TimeLimitExceeded

from tests.workers.conftest import SLEEPY, WorkerEnv
from tests.workers.sleepy_model import SleepyModel
from visionq.broker import busy_workers, completed, recent_service_time, workers_by_queue
from visionq.jobs import JobStore
from visionq.keys import RECENT_KEY
from workers import runtime
from workers.hooks import Heartbeats, Hooks, ModelLoading, ScalingHints, WorkerHook
from workers.runner import JobOutcome

FRAGILE = "tests.workers.test_hooks:FragileModel"


class FragileModel(SleepyModel):
    fork_safe = False


class Recorder(WorkerHook):
    """Remembers every event it receives, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def __getattribute__(self, name: str) -> Any:
        if name.startswith(("on_", "before_", "after_")):
            return lambda *args: self.events.append((name, *args))
        return super().__getattribute__(name)


class Broken(WorkerHook):
    def before_task(self, task: str, job_id: str, hostname: str) -> None:
        raise RuntimeError("a broken hook")

    def on_worker_init(self, queues: list[str]) -> None:
        raise SystemExit("refuse to start")


# -- Hooks: every hook, in order; one failing does not stop the others ------------------

def test_hooks_call_each_hook_in_order_and_survive_a_broken_one(
        caplog: pytest.LogCaptureFixture) -> None:
    first, last = Recorder(), Recorder()
    hooks = Hooks([first, Broken(), last])
    hooks.before_task("face", "j1", "w@h")
    hooks.after_task("face", "j1", "w@h", None, 0.5)
    assert first.events == last.events == [("before_task", "face", "j1", "w@h"),
                                           ("after_task", "face", "j1", "w@h", None, 0.5)]
    assert "worker hook Broken.before_task failed" in caplog.text


def test_a_hook_can_refuse_to_start_the_worker() -> None:
    with pytest.raises(SystemExit, match="refuse to start"):
        Hooks([Broken()]).on_worker_init(["face"])


def test_the_base_hook_ignores_every_event() -> None:
    hook = WorkerHook()
    hook.on_worker_init(["face"])
    hook.after_task("face", "j", "w", None, None)
    hook.on_task_failure("face", "j", "w", RuntimeError())


# -- ModelLoading ----------------------------------------------------------------------

def test_models_load_at_worker_start_and_report_their_load_time(worker_env: WorkerEnv) -> None:
    worker_env(VISIONQ_MODEL_CLASSIFY=SLEEPY)
    heard: list[tuple[str, str, float]] = []
    loading = ModelLoading(on_loaded=lambda *event: heard.append(event))
    loading.on_worker_init(["classify"])
    assert set(runtime.loaded()) == {"classify"}
    assert [event[:2] for event in heard] == [("classify", SLEEPY)]
    loading.on_child_init()  # fork-safe: the child uses the parent's copy
    assert len(heard) == 1


def test_a_model_that_is_not_fork_safe_loads_in_each_child(worker_env: WorkerEnv) -> None:
    worker_env(VISIONQ_MODEL_CLASSIFY=FRAGILE)
    heard: list[tuple[str, str, float]] = []
    loading = ModelLoading(on_loaded=lambda *event: heard.append(event))
    loading.on_worker_init(["classify"])
    assert runtime.loaded() == {}  # loaded to prove it works, dropped before the fork
    loading.on_child_init()
    assert isinstance(runtime.loaded()["classify"], FragileModel)
    assert len(heard) == 2


def test_a_model_that_fails_to_load_stops_the_worker(worker_env: WorkerEnv) -> None:
    worker_env(VISIONQ_MODEL_CLASSIFY=SLEEPY, SLEEPY_FAIL_LOAD="weights file is corrupt")
    with pytest.raises(SystemExit) as stopped:
        Hooks([ModelLoading()]).on_worker_init(["classify"])
    assert str(stopped.value) == (
        f"visionq: cannot start a worker for queue 'classify': model {SLEEPY!r} failed to "
        "load: weights file is corrupt")


# -- Heartbeats and the lost-message sweep ----------------------------------------------

def test_heartbeats_register_the_worker_and_sweep_lost_jobs(worker_env: WorkerEnv,
                                                            idle_redis_url: str) -> None:
    worker_env(REDIS_URL=idle_redis_url)
    client = redis.Redis.from_url(idle_redis_url)
    store = JobStore(client, 600)
    lost = store.create("classify", "blob")
    long_ago = time.time() - 10_000
    client.zadd(RECENT_KEY, {lost.id: long_ago})
    published: list[tuple[str, str]] = []
    heartbeats = Heartbeats(enqueue=lambda task, job_id: published.append((task, job_id)))
    heartbeats.on_worker_ready("hb@host", ["classify"])
    try:
        deadline = time.monotonic() + 10
        while not published and time.monotonic() < deadline:
            time.sleep(0.05)
        assert workers_by_queue(client)["classify"] == ["hb@host"]
        assert published == [("classify", lost.id)]
    finally:
        heartbeats.on_worker_shutdown()
    assert "hb@host" not in workers_by_queue(client).get("classify", [])


# -- ScalingHints ------------------------------------------------------------------------

def test_scaling_hints_mark_the_host_busy_and_record_service_times(
        worker_env: WorkerEnv, idle_redis_url: str) -> None:
    """A queue sharded to another Redis: the hints (on the main one) are the hook's to
    write, in round trips of their own."""
    worker_env(REDIS_URL=idle_redis_url, VISIONQ_INSTANCE_ID="i-0123",
               VISIONQ_REDIS_URL_DETECT="redis://127.0.0.1:1/0")
    client = redis.Redis.from_url(idle_redis_url)
    hints = ScalingHints()
    hints.before_task("detect", "j1", "w@h")
    assert busy_workers(client) == {"i-0123"}
    hints.after_task("detect", "j1", "w@h", JobOutcome("detect", "j1", "succeeded"), 0.25)
    assert busy_workers(client) == frozenset()
    assert recent_service_time(client, "detect") == pytest.approx(0.25)
    assert completed(client, "detect") == 1
    hints.after_task("detect", "j2", "w@h", None, None)  # never seen starting: no sample
    assert completed(client, "detect") == 1


def test_scaling_hints_ride_along_with_the_job_when_they_share_its_redis(
        worker_env: WorkerEnv, idle_redis_url: str) -> None:
    """The default: the runner's begin and finish round trips carry the hints
    (``JobOutcome.hints``); the hook writes only what a run that ended early left."""
    worker_env(REDIS_URL=idle_redis_url, VISIONQ_INSTANCE_ID="i-0123")
    client = redis.Redis.from_url(idle_redis_url)
    hints = ScalingHints()
    hints.before_task("detect", "j1", "w@h")
    assert busy_workers(client) == frozenset()  # the job's begin marks it, not the hook
    carried = JobOutcome("detect", "j1", "succeeded", hints=True)
    hints.after_task("detect", "j1", "w@h", carried, 0.25)
    assert completed(client, "detect") == 0  # the job's finish recorded it, not the hook
    client.zadd("visionq:autoscale:busy", {"i-0123/j2": 1e12})  # a begin's mark, then...
    hints.after_task("detect", "j2", "w@h", JobOutcome("detect", "j2", "duplicate"), 0.01)
    assert busy_workers(client) == frozenset()  # ...a duplicate: the hook clears it
    assert completed(client, "detect") == 1


def test_scaling_hints_never_fail_a_job(worker_env: WorkerEnv,
                                        caplog: pytest.LogCaptureFixture) -> None:
    worker_env(REDIS_URL="redis://127.0.0.1:1/0",  # nothing listens there
               VISIONQ_REDIS_URL_FACE="redis://127.0.0.1:2/0")  # the hook writes the hints
    hints = ScalingHints()
    hints.before_task("face", "j1", "w@h")
    hints.after_task("face", "j1", "w@h", None, 0.1)
    assert "could not mark j1 busy" in caplog.text
    assert "could not record service time of j1" in caplog.text


# -- the bridge from Celery's signals ----------------------------------------------------

def _task(name: str, hostname: str | None = "w@h") -> SimpleNamespace:
    return SimpleNamespace(name=name, request=SimpleNamespace(hostname=hostname))


def test_celery_signals_become_hook_events() -> None:
    from workers.app import SignalBridge

    recorder = Recorder()
    bridge = SignalBridge(Hooks([recorder]))
    worker = SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(
        queues=SimpleNamespace(consume_from={"detect": object(), "celery": object()}))),
        hostname="w@h")
    bridge.worker_init(sender=worker)
    bridge.worker_ready(sender=worker)
    outcome = JobOutcome("detect", "j1", "succeeded")
    bridge.task_prerun(task_id="j1", task=_task("visionq.detect"))
    bridge.task_postrun(task_id="j1", task=_task("visionq.detect"), retval=outcome)
    bridge.task_postrun(task_id="j2", task=_task("visionq.detect", None), retval=ValueError())
    limit = TimeLimitExceeded(60)
    bridge.task_failure(sender=_task("visionq.detect", None), task_id="j3", exception=limit)
    bridge.task_revoked(request=SimpleNamespace(id="j4", hostname="w@h", task="visionq.face"),
                        sender=None)
    bridge.task_prerun(task_id="x", task=_task("celery.ping"))  # not ours: ignored
    bridge.worker_process_shutdown(pid=123)
    bridge.worker_shutdown(sender=worker)

    names = [event[0] for event in recorder.events]
    assert names == ["on_worker_init", "on_worker_ready", "before_task", "after_task",
                     "after_task", "on_task_failure", "on_task_revoked", "on_child_exit",
                     "on_worker_shutdown"]
    events = recorder.events
    assert events[0] == ("on_worker_init", ["detect"])
    assert events[1] == ("on_worker_ready", "w@h", ["detect"])
    assert events[2] == ("before_task", "detect", "j1", "w@h")
    _, task, job_id, hostname, got, seconds = events[3]
    assert (task, job_id, hostname, got) == ("detect", "j1", "w@h", outcome)
    assert 0 <= seconds < 5
    assert events[4] == ("after_task", "detect", "j2", "unknown", None, None)
    assert events[5] == ("on_task_failure", "detect", "j3", "unknown", limit)
    assert events[6] == ("on_task_revoked", "face", "j4", "w@h")
    assert events[7] == ("on_child_exit", 123)


def test_a_worker_without_queues_consumes_all_of_them() -> None:
    from workers.queues import consumed_queues

    worker = SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(
        queues=SimpleNamespace(consume_from=None))))
    assert consumed_queues(worker) == ["face", "detect", "classify"]


def test_the_tasks_are_registered_on_the_worker_side_only() -> None:
    """``tasks`` knows the names; ``workers.app`` (imported by a starting worker) adds the
    implementations, whose requests fail a job on a hard time limit."""
    import tasks
    from workers.app import JobTask
    from workers.request import JobRequest

    for queue, name in tasks.TASK_NAMES.items():
        task = tasks.app.tasks[name]
        assert isinstance(task, JobTask) and task.Request is JobRequest, queue
