"""The supervisor of ``visionq up``: the restart policy as a pure function of exit times
(table-driven, a clock passed in), then the polling part on real short-lived processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

from launcher.supervisor import (
    RestartPolicy,
    RestartTracker,
    Snapshot,
    Supervisor,
    describe_exit,
)

POLICY = RestartPolicy(backoff_initial_s=1, backoff_max_s=30, give_up_after=5, window_s=120,
                       stable_s=30)


def run_exits(policy: RestartPolicy, runs: list[tuple[float, float]]) -> list[str]:
    """``runs``: (seconds the role ran, seconds waited before it started) per exit, from
    t=0; returns the decision of each exit as ``"restart 4"`` or ``"give up"``."""
    tracker, now, out = RestartTracker(policy), 0.0, []
    for ran, waited in runs:
        now += waited
        tracker.started(now)
        now += ran
        decision = tracker.exited(now)
        out.append("give up" if decision.give_up else f"restart {decision.delay_s:g}")
    return out


@pytest.mark.parametrize(("runs", "expected"), [
    # a crash loop: the backoff doubles, the fifth short run within the window gives up
    ([(2, 0), (2, 1), (2, 2), (2, 4), (2, 8)],
     ["restart 1", "restart 2", "restart 4", "restart 8", "give up"]),
    # one long-lived crash: always the initial backoff
    ([(600, 0), (600, 1), (600, 1), (600, 1), (600, 1), (600, 1)], ["restart 1"] * 6),
    # a stable run resets the backoff and the short runs counted toward giving up
    ([(2, 0), (2, 1), (2, 2), (31, 4), (2, 1), (2, 1)],
     ["restart 1", "restart 2", "restart 4", "restart 1", "restart 1", "restart 2"]),
    # exactly stable_s is stable
    ([(30, 0), (30, 1)], ["restart 1", "restart 1"]),
    # a slow crash loop (29 s runs): the backoff reaches the cap and stays; short runs fall
    # out of the window before five accumulate, so it is never given up
    ([(29, 0), (29, 1), (29, 2), (29, 4), (29, 8), (29, 16), (29, 30), (29, 30)],
     ["restart 1", "restart 2", "restart 4", "restart 8", "restart 16", "restart 30",
      "restart 30", "restart 30"]),
])
def test_policy(runs: list[tuple[float, float]], expected: list[str]) -> None:
    assert run_exits(POLICY, runs) == expected


def test_backoff_is_capped() -> None:
    policy = RestartPolicy(backoff_initial_s=1, backoff_max_s=30, give_up_after=100,
                           window_s=1, stable_s=30)
    delays = run_exits(policy, [(5, 0)] * 12)
    assert delays == [f"restart {d}" for d in (1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30, 30)]


def test_short_runs_outside_the_window_are_forgotten() -> None:
    policy = RestartPolicy(backoff_initial_s=1, backoff_max_s=1, give_up_after=3,
                           window_s=10, stable_s=30)
    # exits at t=1, 3, 15, 17: never three within 10 s
    assert run_exits(policy, [(1, 0), (1, 1), (1, 11), (1, 1)]) == ["restart 1"] * 4
    # exits at t=1, 3, 5: the third within 10 s gives up
    assert run_exits(policy, [(1, 0), (1, 1), (1, 1)]) == ["restart 1", "restart 1", "give up"]


def test_give_up_after_one() -> None:
    assert run_exits(RestartPolicy(give_up_after=1), [(0.5, 0)]) == ["give up"]


@pytest.mark.parametrize("kwargs", [
    {"backoff_initial_s": 5, "backoff_max_s": 1}, {"backoff_initial_s": -1},
    {"give_up_after": 0}, {"window_s": 0}, {"stable_s": -1},
])
def test_policy_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "text"), [
    (0, "exit code 0"), (3, "exit code 3"), (-signal.SIGKILL, "killed by SIGKILL"),
    (-signal.SIGSEGV, "killed by SIGSEGV"), (-200, "killed by signal 200"),
])
def test_describe_exit(code: int, text: str) -> None:
    assert describe_exit(code) == text


# -- the polling part, on real processes -------------------------------------------------


@dataclass
class Role:
    name: str
    command: list[str]
    critical: bool = False
    ready_critical: bool = False
    process: subprocess.Popen | None = None
    starts: int = 0


@dataclass
class Harness:
    children: list[Role]
    policy: RestartPolicy
    now: float = 0.0
    said: list[str] = field(default_factory=list)
    recorded: list[Snapshot] = field(default_factory=list)
    redis_up: bool = True

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.children, self.start, self.said.append, self.record,
                                     self.policy, lambda: self.now)
        for child in self.children:
            self.start(child)
            self.supervisor.started(child)

    def start(self, child: Role) -> None:  # type: ignore[override]
        child.process = subprocess.Popen(child.command, start_new_session=True)
        child.starts += 1

    def record(self, snapshot: Snapshot) -> bool:
        if self.redis_up:
            self.recorded.append(Snapshot(dict(snapshot.restarts), dict(snapshot.gave_up)))
        return self.redis_up

    def exited(self, child: Role) -> None:
        assert child.process is not None
        child.process.wait(30)

    def stop(self) -> None:
        for child in self.children:
            if child.process and child.process.poll() is None:
                child.process.kill()
                child.process.wait()


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture()
def harness_factory():
    made: list[Harness] = []

    def make(children: list[Role], policy: RestartPolicy) -> Harness:
        harness = Harness(children, policy)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.stop()


def test_a_dead_child_is_restarted_after_its_backoff(harness_factory) -> None:
    crash = Role("worker-x", python("raise SystemExit(3)"), ready_critical=True)
    steady = Role("exporter", python("import time; time.sleep(60)"))
    h = harness_factory([crash, steady], POLICY)
    h.exited(crash)
    h.now = 2.0
    h.supervisor.poll()
    assert h.recorded[-1].restarts == {"worker-x": 0, "exporter": 0}
    assert h.said[-1] == "worker-x exited unexpectedly (exit code 3); restarting it in 1 s"
    assert crash.starts == 1
    h.now = 2.5
    h.supervisor.poll()
    assert crash.starts == 1, "restarted before its backoff passed"
    h.now = 3.0
    h.supervisor.poll()
    assert crash.starts == 2 and steady.starts == 1
    assert h.recorded[-1].restarts == {"worker-x": 1, "exporter": 0}
    assert "restarting worker-x (restart 1)" in h.said


def test_a_crash_loop_is_given_up_and_recorded(harness_factory) -> None:
    crash = Role("worker-x", python("raise SystemExit(3)"), ready_critical=True)
    policy = RestartPolicy(backoff_initial_s=1, backoff_max_s=30, give_up_after=3,
                           window_s=120, stable_s=30)
    h = harness_factory([crash], policy)
    for _ in range(20):
        h.exited(crash)
        h.now += 10
        h.supervisor.poll()  # notes the exit
        h.now += 10
        h.supervisor.poll()  # restarts, unless given up
        if h.supervisor.gave_up("worker-x"):
            break
    assert crash.starts == 3
    [gave_up] = h.recorded[-1].gave_up.values()
    assert gave_up.role == "worker-x" and gave_up.ready_critical and not gave_up.critical
    assert "exit code 3; 3 exits within 120 s" in gave_up.reason
    assert "giving up on it" in h.said[-1] and "/readyz" in h.said[-1]
    assert h.supervisor.fatal() == []
    h.now += 100
    h.supervisor.poll()
    assert crash.starts == 3, "a given-up role was started again"


def test_a_critical_role_given_up_is_fatal(harness_factory) -> None:
    api = Role("api", python("raise SystemExit(1)"), critical=True)
    h = harness_factory([api], RestartPolicy(give_up_after=1))
    h.exited(api)
    h.supervisor.poll()
    assert [g.role for g in h.supervisor.fatal()] == ["api"]
    assert "stopping the stack" in h.said[-1]


def test_a_killed_child_is_named_by_its_signal_and_its_group_is_cleaned(
        harness_factory) -> None:
    # The main process starts a grandchild in its process group (like Celery's pool), then
    # is killed: the supervisor must not leave the grandchild running.
    main = Role("worker-y", python(
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "print(p.pid, flush=True); time.sleep(120)"))
    h = harness_factory([main], POLICY)
    assert main.process is not None
    deadline = time.monotonic() + 60
    while len(_group(main.process.pid)) < 2:  # the grandchild exists
        assert time.monotonic() < deadline
        time.sleep(0.05)
    main.process.send_signal(signal.SIGKILL)
    h.exited(main)
    h.supervisor.poll()
    assert "(killed by SIGKILL)" in h.said[-1]
    deadline = time.monotonic() + 60
    while _group(main.process.pid):
        assert time.monotonic() < deadline, "the pool child outlived its killed main process"
        time.sleep(0.05)


def test_a_role_that_cannot_be_started_again_is_retried_then_given_up(
        harness_factory) -> None:
    crash = Role("worker-x", python("raise SystemExit(3)"), ready_critical=True)
    h = harness_factory([crash], RestartPolicy(backoff_initial_s=1, give_up_after=2))
    crash.command = ["/nonexistent/celery"]  # e.g. the venv was removed under it
    h.exited(crash)
    h.supervisor.poll()  # exit noted: restart in 1 s
    h.now = 1.0
    h.supervisor.poll()  # the restart fails to spawn: the second short run, given up
    assert crash.process is None and crash.starts == 1
    [gave_up] = h.recorded[-1].gave_up.values()
    assert gave_up.reason.startswith("could not be started: ") and "nonexistent" in \
        gave_up.reason
    assert h.recorded[-1].restarts == {"worker-x": 1}


def test_records_are_offered_again_while_redis_is_down(harness_factory) -> None:
    crash = Role("worker-x", python("raise SystemExit(2)"))
    h = harness_factory([crash], POLICY)
    h.redis_up = False
    h.exited(crash)
    h.supervisor.poll()
    h.now = 5
    h.supervisor.poll()
    assert crash.starts == 2 and h.recorded == []
    h.redis_up = True
    h.supervisor.poll()
    assert h.recorded[-1].restarts == {"worker-x": 1}


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True)
    pids = []
    for line in out.stdout.splitlines():
        pid, group, stat = line.split()[:3]
        if int(group) == pgid and not stat.startswith("Z"):
            pids.append(int(pid))
    return pids
