"""Replay load traces through autoscaling policies on a model of EC2 workers: visionq's
``autoscale.policy.decide`` (the real function) against a naive and a KEDA-like policy, on
the same seeded arrivals and service times.  Policies, model and scoring:
docs/autoscaling.md.

    python bench/autoscale_sim.py            # all traces, JSON + PNGs in bench/results/
    python bench/autoscale_sim.py --trace step --no-plot
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscale.policy import Observation, Policy, PoolPolicy, QueueObservation, State, decide  # noqa: E402
from autoscale.rates import ArrivalRates  # noqa: E402
from bench.harness import plots  # noqa: E402
from bench.harness.common import RESULTS  # noqa: E402

MAX_INSTANCES = 19
#: c7i.large on-demand, us-east-1, USD per hour (order of magnitude; only ratios matter).
PRICE_PER_HOUR = 0.0893
BOOT_RANGE = (60.0, 120.0)
LATE_FRACTION = 0.05


# -- traces: arrival rate (tasks/s) as a function of time --------------------------------

@dataclass(frozen=True)
class Trace:
    name: str
    seconds: int
    rate: Callable[[float], float]
    service_mean: float = 2.0


def _step(t: float) -> float:
    return 6.0 if 600 <= t < 1800 else 0.5


def _spiky(t: float) -> float:
    return 8.0 if t % 600 < 60 else 0.8


def _daily(t: float) -> float:
    day = 86_400.0
    return 0.1 + 3.9 * math.sin(math.pi * (t % day) / day) ** 4


TRACES = {
    "step": Trace("step", 3600, _step),
    "spiky": Trace("spiky", 7200, _spiky),
    "daily": Trace("daily", 86_400, _daily),
}


# -- the worker model ---------------------------------------------------------------------

@dataclass
class Instance:
    launched: float
    ready: float
    free_at: float = 0.0
    task_arrival: float | None = None
    draining: bool = False
    ended: float | None = None


@dataclass
class World:
    rng: np.random.Generator
    service_mean: float
    instances: list[Instance] = field(default_factory=list)
    queue: deque[float] = field(default_factory=deque)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (arrival, latency)
    lost: list[float] = field(default_factory=list)  # arrival times of lost tasks
    done: int = 0
    recent_service: deque[float] = field(default_factory=lambda: deque(maxlen=200))

    def live(self) -> list[Instance]:
        return [i for i in self.instances if i.ended is None]

    def serving(self, now: float) -> list[Instance]:
        return [i for i in self.live() if i.ready <= now and not i.draining]

    def booting(self, now: float) -> list[Instance]:
        return [i for i in self.live() if i.ready > now and not i.draining]

    def busy(self) -> int:
        return sum(1 for i in self.live() if i.task_arrival is not None)

    def service_time(self) -> float:
        sigma = 0.5
        return float(self.rng.lognormal(math.log(self.service_mean) - sigma**2 / 2, sigma))

    def launch(self, now: float) -> None:
        self.instances.append(Instance(now, now + float(self.rng.uniform(*BOOT_RANGE))))

    def step(self, now: float, dt: float) -> None:
        end = now + dt
        for inst in self.live():
            if inst.ready >= end:
                continue
            t = max(inst.ready, inst.free_at, now)
            while t < end:
                if inst.task_arrival is not None and inst.free_at <= end:
                    self.latencies.append((inst.task_arrival, inst.free_at - inst.task_arrival))
                    self.done += 1
                    inst.task_arrival = None
                    t = max(t, inst.free_at)
                if inst.task_arrival is not None:
                    break
                if inst.draining:
                    inst.ended = max(t, now)
                    break
                if not self.queue or self.queue[0] >= end:
                    break
                arrival = self.queue.popleft()
                start = max(t, arrival)
                s = self.service_time()
                self.recent_service.append(s)
                inst.task_arrival, inst.free_at = arrival, start + s
                t = start

    def terminate(self, inst: Instance, now: float, graceful: bool) -> None:
        if graceful:
            inst.draining = True
            if inst.task_arrival is None:
                inst.ended = now
            return
        if inst.task_arrival is not None:
            self.lost.append(inst.task_arrival)
            inst.task_arrival = None
        inst.ended = now


# -- policies -----------------------------------------------------------------------------

class Controller:
    name = ""
    interval = 5.0
    graceful = True
    idle_first = True

    def desired(self, world: World, now: float) -> int:
        raise NotImplementedError


class Naive(Controller):
    name, interval, graceful, idle_first = "naive", 5.0, False, False

    def desired(self, world: World, now: float) -> int:
        running = len(world.serving(now)) + len(world.booting(now))
        return max(0, min(MAX_INSTANCES, len(world.queue) - running))


class KedaLike(Controller):
    name, interval, graceful, idle_first = "keda", 30.0, True, False
    list_length = 5
    cooldown = 300.0

    def __init__(self) -> None:
        self.history: deque[tuple[float, int]] = deque()

    def desired(self, world: World, now: float) -> int:
        rec = min(MAX_INSTANCES, math.ceil(len(world.queue) / self.list_length))
        self.history.append((now, rec))
        while self.history and now - self.history[0][0] > self.cooldown:
            self.history.popleft()
        current = len(world.serving(now)) + len(world.booting(now))
        return rec if rec >= current else min(current, max(r for _, r in self.history))


class Visionq(Controller):
    name, interval, graceful, idle_first = "visionq", 5.0, True, True

    def __init__(self, pool: PoolPolicy) -> None:
        self.policy = Policy(default=pool)
        self.state = State()
        self.rates = ArrivalRates()
        self.last_reason = ""

    def desired(self, world: World, now: float) -> int:
        in_flight = world.busy()
        backlog = len(world.queue)
        s = (sum(world.recent_service) / len(world.recent_service)
             if world.recent_service else None)
        obs = QueueObservation(
            backlog=backlog, in_flight=in_flight,
            arrival_rate=self.rates.update("q", now, backlog + in_flight, world.done),
            service_time=s, current=len(world.serving(now)), pending=len(world.booting(now)),
        )
        d = decide(Observation(now=now, queues={"q": obs}), self.policy, self.state)
        self.state, self.last_reason = d.state, d.reasons["q"]
        return d.desired["q"]


VISIONQ_POOL = PoolPolicy(
    target_backlog_seconds=10.0, concurrency=1, min_workers=0, max_workers=MAX_INSTANCES,
    max_step_up=10, max_step_down=2, stabilization_seconds=180.0, boot_seconds=90.0,
    tolerance=0.1, target_utilization=0.8,
)


def apply(world: World, ctl: Controller, want: int, now: float) -> None:
    serving, booting = world.serving(now), world.booting(now)
    have = len(serving) + len(booting)
    for _ in range(want - have):
        world.launch(now)
    if want >= have:
        return
    # booting instances go first (nothing to lose), then idle (if the policy knows), then any
    pool = booting + serving
    if ctl.idle_first:
        pool.sort(key=lambda i: (i.ready <= now, i.task_arrival is not None))
    else:
        world.rng.shuffle(pool)  # type: ignore[arg-type]
    for inst in pool[: have - want]:
        world.terminate(inst, now, ctl.graceful)


# -- running and scoring ------------------------------------------------------------------

@dataclass
class Result:
    policy: str
    trace: str
    slo_missed_minutes: int
    minutes: int
    p95_latency_s: float
    lost_tasks: int
    tasks: int
    instance_hours: float
    cost_usd: float
    max_queue: int
    capacity_changes: int
    series: dict[str, list[float]] = field(default_factory=dict, repr=False)


def run(trace: Trace, ctl: Controller, seed: int, slo: float, dt: float = 1.0) -> Result:
    rng_arrivals = np.random.default_rng(seed)
    world = World(np.random.default_rng(seed + 1), trace.service_mean)
    series: dict[str, list[float]] = {"t": [], "rate": [], "queue": [], "capacity": []}
    next_poll, changes, last_want, tasks, max_queue = 0.0, 0, 0, 0, 0
    now = 0.0
    while now < trace.seconds:
        n = int(rng_arrivals.poisson(trace.rate(now) * dt))
        tasks += n
        world.queue.extend(sorted(now + rng_arrivals.uniform(0, dt, n)))
        if now >= next_poll:
            want = ctl.desired(world, now)
            if want != last_want:
                changes += 1
            last_want = want
            apply(world, ctl, want, now)
            next_poll += ctl.interval
        world.step(now, dt)
        max_queue = max(max_queue, len(world.queue))
        if int(now) % 10 == 0:
            series["t"].append(now)
            series["rate"].append(trace.rate(now))
            series["queue"].append(len(world.queue))
            series["capacity"].append(len(world.serving(now)) + len(world.booting(now)))
        now += dt
    end = now
    minutes = trace.seconds // 60
    arrived = np.zeros(minutes + 1)
    late = np.zeros(minutes + 1)
    lat_by_minute: list[list[float]] = [[] for _ in range(minutes + 1)]
    for arrival, latency in world.latencies:
        m = int(arrival // 60)
        arrived[m] += 1
        late[m] += latency > slo
        lat_by_minute[m].append(latency)
    unfinished = list(world.queue) + [i.task_arrival for i in world.live()
                                      if i.task_arrival is not None]
    for arrival in world.lost + unfinished:
        m = int(arrival // 60)
        arrived[m] += 1
        late[m] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        missed = int(np.sum((arrived > 0) & (late / np.maximum(arrived, 1) > LATE_FRACTION)))
    seconds = sum(max(60.0, (i.ended if i.ended is not None else end) - i.launched)
                  for i in world.instances)
    all_lat = [latency for _, latency in world.latencies]
    series["p95_by_minute"] = [float(np.percentile(v, 95)) if v else 0.0 for v in lat_by_minute]
    return Result(
        policy=ctl.name, trace=trace.name, slo_missed_minutes=missed, minutes=minutes,
        p95_latency_s=round(float(np.percentile(all_lat, 95)) if all_lat else 0.0, 2),
        lost_tasks=len(world.lost), tasks=tasks,
        instance_hours=round(seconds / 3600, 2),
        cost_usd=round(seconds / 3600 * PRICE_PER_HOUR, 2),
        max_queue=max_queue, capacity_changes=changes, series=series,
    )


def controllers() -> list[Controller]:
    return [Naive(), KedaLike(), Visionq(VISIONQ_POOL)]


def plot(trace: str, results: list[Result], slo: float, out: Path) -> None:
    plt = plots.plt

    fig, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    first = results[0].series
    hours = np.array(first["t"]) / 3600
    axes[0].plot(hours, first["rate"], color="black")
    axes[0].set_ylabel("arrivals / s")
    axes[0].set_title(f"trace: {trace}")
    for r in results:
        s = r.series
        axes[1].plot(hours, s["queue"], label=r.policy, lw=1)
        axes[2].step(hours, s["capacity"], label=r.policy, lw=1, where="post")
        minutes = np.arange(len(s["p95_by_minute"])) / 60
        axes[3].plot(minutes, s["p95_by_minute"], label=r.policy, lw=1)
    axes[1].set_ylabel("queue length")
    axes[2].set_ylabel("instances (serving + booting)")
    axes[3].axhline(slo, color="red", ls="--", lw=1, label=f"SLO {slo:.0f}s")
    axes[3].set_ylabel("p95 latency by arrival minute (s)")
    axes[3].set_yscale("symlog", linthresh=slo)
    axes[3].set_xlabel("hours")
    for ax in axes[1:]:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    plots.save(fig, out, dpi=90)


def table(results: list[Result]) -> str:
    head = ("| trace | policy | SLO-missed min | p95 latency s | lost tasks | instance-h | "
            "cost $ | max queue | capacity changes |")
    rows = [head, "|" + "---|" * 9]
    for r in results:
        rows.append(
            f"| {r.trace} | {r.policy} | {r.slo_missed_minutes}/{r.minutes} | "
            f"{r.p95_latency_s} | {r.lost_tasks}/{r.tasks} | {r.instance_hours} | "
            f"{r.cost_usd} | {r.max_queue} | {r.capacity_changes} |"
        )
    return "\n".join(rows)


def verdict(results: list[Result]) -> dict[str, bool]:
    """Per trace: visionq has at most half naive's SLO-missed minutes at no more
    instance-hours."""
    out = {}
    for trace in dict.fromkeys(r.trace for r in results):
        by = {r.policy: r for r in results if r.trace == trace}
        ours, naive = by["visionq"], by["naive"]
        out[trace] = (ours.slo_missed_minutes <= naive.slo_missed_minutes / 2
                      and ours.instance_hours <= naive.instance_hours)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--trace", choices=[*TRACES, "all"], default="all")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--slo", type=float, default=30.0, help="latency SLO per task, seconds")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    names = list(TRACES) if args.trace == "all" else [args.trace]
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    for name in names:
        trace_results = [run(TRACES[name], ctl, args.seed, args.slo) for ctl in controllers()]
        results += trace_results
        if not args.no_plot:
            plot(name, trace_results, args.slo, args.out / f"autoscale_sim_{name}.png")
    ok = verdict(results)
    payload = {
        "seed": args.seed, "slo_seconds": args.slo, "late_fraction": LATE_FRACTION,
        "boot_seconds": BOOT_RANGE, "price_per_hour": PRICE_PER_HOUR,
        "max_instances": MAX_INSTANCES, "visionq_policy": asdict(VISIONQ_POOL),
        "goal_met": ok,
        "results": [{k: v for k, v in asdict(r).items() if k != "series"} for r in results],
    }
    (args.out / "autoscale_sim.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(table(results))
    print()
    for trace, good in ok.items():
        print(f"- {trace}: visionq <= 1/2 naive's SLO-missed minutes at <= its instance-hours: "
              f"{'yes' if good else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
