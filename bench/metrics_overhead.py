"""``python -m bench.metrics_overhead``: what the Prometheus metrics cost, on vs off, in one
run.  Goal (issue 5): < 3 % on the API's submit throughput and on a worker's task rate.

"On" is what ``visionq up`` runs: request/task hooks recording into prometheus_client's
multiprocess files (``PROMETHEUS_MULTIPROC_DIR``), and the API's ``/metrics`` scraped
every ``--scrape-interval`` seconds (Prometheus' default is 15 s; 5 s is harsher).  "Off":
``VISIONQ_METRICS=0`` and no ``PROMETHEUS_MULTIPROC_DIR``, so no hook is installed at all.

The machine is shared and noisy (2 cores, other people's benchmarks), so both variants run
side by side for the whole run (four throw-away stacks: submit-only on/off, API + one
worker child on/off) and are measured for ``--rounds`` rounds, the order swapped every
round.  ``--mode paired`` (default) loads on and off at the same time: they share the CPU
and whatever a neighbour does hits both alike, so on/off is the ratio of their cost per
request or task; ``--mode alternate`` runs them one after the other (on-off, off-on...),
which is what a user would see but is at the mercy of the neighbours.  The figures are the
medians of the per-round ratios (on / off), plus every round's raw numbers.

- submit: closed loop, ``--concurrency`` connections posting ``/v1/jobs`` for
  ``--submit-seconds``; accepted (202) per second.  No worker consumes; Redis is flushed
  between phases.
- worker: ``--jobs`` jobs are queued while the worker's consumer is paused (Celery's
  ``cancel_consumer``), then it is resumed; the rate is jobs / (last finished_at - first
  started_at), from the job records, so neither submitting nor polling is inside the span
  (paired: jobs finished while both workers were draining / that overlap).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import threading
from collections.abc import Sequence
from typing import Any

import redis
import requests
from celery import Celery
from PIL import Image

from bench.harness.common import FIXTURES, Run, say
from bench.harness.http import Target, multipart, request
from bench.harness.procstat import tree_cpu_s
from bench.harness.stack import HUGE_BACKLOG, VisionqStack, final_jobs
from launcher.up import Service
from tasks.config import celery_config
from visionq.settings import Settings

GOAL = 0.03
SOURCE_IMAGE = FIXTURES / "classify" / "coco_000000000034_zebra.jpg"
"""Shrunk to 224 px (the classify model's input): a cheap job makes the per-job metrics
cost as visible as it can be, and keeps Redis small."""


class MetricsStack(VisionqStack):
    """A ``VisionqStack`` with metrics on (as ``visionq up``) or off."""

    def __init__(self, tasks: Sequence[str], *, metrics: bool, **kwargs: Any) -> None:
        env = dict(kwargs.pop("env", None) or {})
        if not metrics:
            env["VISIONQ_METRICS"] = "0"
        super().__init__(tasks, env=env, **kwargs)
        self.metrics = metrics

    def _tuned(self, service: Service) -> list[str]:
        if not self.metrics:
            service.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return super()._tuned(service)

    def describe(self) -> dict[str, Any]:
        """What really runs: the API's gunicorn command as planned by ``visionq up``."""
        described = {**super().describe(), "metrics": self.metrics}
        for service in self._stack.services if self._stack else []:
            if service.name == "api":
                command = service.command[service.command.index("gunicorn"):]
                described["api_command"] = " ".join(command)
                described.pop("api_threads", None), described.pop("api_worker_class", None)
        return described


def small_jpeg(side: int = 224) -> bytes:
    with Image.open(SOURCE_IMAGE) as image:
        image = image.convert("RGB")
        image.thumbnail((side, side))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90)
    return out.getvalue()


# -- submit throughput --------------------------------------------------------------------

async def _closed_loop(url: str, path: str, body: bytes, ctype: str, concurrency: int,
                       seconds: float) -> tuple[float, int, int, list[str]]:
    target = Target.parse(url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    accepted = failed = 0
    errors: list[str] = []

    async def client() -> None:
        nonlocal accepted, failed
        while loop.time() < deadline:
            try:
                response = await request(target, "POST", path, body=body,
                                         headers={"Content-Type": ctype}, timeout_s=10)
                if response.status == 202:
                    accepted += 1
                    continue
                failed += 1
                errors.append(f"http_{response.status}")
            except Exception as exc:  # noqa: BLE001 - tallied, the phase goes on
                failed += 1
                errors.append(type(exc).__name__)

    started = loop.time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = loop.time() - started
    return accepted / elapsed, accepted, failed, errors[:5]


class Scraper:
    """Scrapes ``url`` every ``interval_s`` while active (Prometheus' cost to the API)."""

    def __init__(self, url: str, interval_s: float) -> None:
        self.url, self.interval_s = url, interval_s
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Scraper:
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:  # one scrape at once, then every interval: a phase always pays some
            try:
                requests.get(f"{self.url}/metrics", timeout=5)
                self.scrapes += 1
            except requests.RequestException:
                pass
            if self._stop.wait(self.interval_s):
                return

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def submit_phase(stacks: Sequence[MetricsStack], args: argparse.Namespace,
                 body: tuple[bytes, str], seconds: float) -> list[dict[str, Any]]:
    """Closed-loop submits against every stack at once (one stack: alone)."""
    for stack in stacks:
        redis.Redis.from_url(stack.redis_url).flushdb()
    scrapers = [Scraper(s.url, args.scrape_interval if s.metrics else 0) for s in stacks]

    async def together() -> list[tuple[float, int, int, list[str]]]:
        return await asyncio.gather(*(_closed_loop(
            s.url, f"/v1/jobs?task={args.task}", body[0], body[1], args.concurrency, seconds)
            for s in stacks))

    for scraper in scrapers:
        scraper.__enter__()
    cpu = [tree_cpu_s([s.pids()["api"]]) for s in stacks]
    try:
        outcomes = asyncio.run(together())
    finally:
        cpu = [tree_cpu_s([s.pids()["api"]]) - c for s, c in zip(stacks, cpu, strict=True)]
        for scraper in scrapers:
            scraper.__exit__()
    return [{"accepted_per_s": round(rate, 1), "accepted": accepted, "failed": failed,
             "errors": errors, "scrapes": scraper.scrapes, "api_cpu_s": round(used, 2),
             "cpu_ms_per_job": round(1000 * used / accepted, 3) if accepted else None}
            for (rate, accepted, failed, errors), scraper, used
            in zip(outcomes, scrapers, cpu, strict=True)]


# -- worker task rate ---------------------------------------------------------------------

def _control(stack: MetricsStack) -> Celery:
    app = Celery(f"overhead-{stack.port}")
    app.config_from_object({**celery_config(Settings(redis_url=stack.redis_url)),
                            "result_backend": None})
    return app


def _set_consuming(app: Celery, queue: str, on: bool) -> None:
    control = app.control.add_consumer if on else app.control.cancel_consumer
    replies = control(queue, reply=True, timeout=5, limit=1)  # one worker: don't wait 5 s
    if not replies:
        raise RuntimeError(f"no worker answered {'add' if on else 'cancel'}_consumer({queue})")


async def _submit_all(url: str, task: str, body: tuple[bytes, str], count: int) -> list[str]:
    target = Target.parse(url)
    ids: list[str] = []
    pending = iter(range(count))

    async def client() -> None:
        for _ in pending:
            response = await request(target, "POST", f"/v1/jobs?task={task}", body=body[0],
                                     headers={"Content-Type": body[1]}, timeout_s=30)
            if response.status != 202:
                raise RuntimeError(f"submit answered {response.status}: {response.body[:200]}")
            ids.append(response.json()["id"])

    await asyncio.gather(*(client() for _ in range(8)))
    return ids


def worker_phase(stacks: Sequence[tuple[MetricsStack, Celery]], args: argparse.Namespace,
                 body: tuple[bytes, str], jobs: int) -> list[dict[str, Any]]:
    """Queue ``jobs`` per stack with its consumer paused, resume them all, time the drain."""
    for _, app in stacks:
        _set_consuming(app, args.task, on=False)
    try:
        ids = [asyncio.run(_submit_all(stack.url, args.task, body, jobs))
               for stack, _ in stacks]
    finally:
        cpu = [tree_cpu_s([_worker_pid(stack)]) for stack, _ in stacks]
        for _, app in stacks:
            _set_consuming(app, args.task, on=True)
    drained = [_drained(stack, job_ids) for (stack, _), job_ids in zip(stacks, ids, strict=True)]
    for (stack, _), before, d in zip(stacks, cpu, drained, strict=True):
        used = tree_cpu_s([_worker_pid(stack)]) - before
        d.update(worker_cpu_s=round(used, 2), cpu_ms_per_task=round(1000 * used / d["jobs"], 3))
    if len(drained) > 1:
        # Whoever finishes first leaves the other the whole machine: compare them only
        # while both were running.
        start = max(min(d.pop("started")) for d in drained)
        end = min(max(d["finished"]) for d in drained)
        for d in drained:
            done = sum(start <= t <= end for t in d.pop("finished"))
            d.update(tasks_per_s=round(done / (end - start), 2), overlap_s=round(end - start, 2),
                     overlap_tasks=done)
    else:
        for d in drained:
            d.pop("started"), d.pop("finished")
    return drained


def _worker_pid(stack: MetricsStack) -> int:
    return next(pid for name, pid in stack.pids().items() if name.startswith("worker-"))


def _drained(stack: MetricsStack, ids: list[str]) -> dict[str, Any]:
    rows = final_jobs(redis.Redis.from_url(stack.redis_url), ids,
                      ("started_at", "finished_at"), 60 + len(ids), 0.5)
    failed = sum(row[0] == b"failed" for row in rows)
    started = [float(r[1]) for r in rows]
    finished = [float(r[2]) for r in rows]
    span = max(finished) - min(started)
    return {"tasks_per_s": round(len(ids) / span, 2), "jobs": len(ids), "failed": failed,
            "span_s": round(span, 2), "started": started, "finished": finished}


# -- the run ------------------------------------------------------------------------------

def _ratio(on: float, off: float) -> float:
    return round(on / off, 4) if off else float("nan")


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput: median of the per-round on/off ratios.  CPU: the same for the CPU time
    the API (or worker) process tree used per accepted job (task), the cost that the
    throughput of a busy machine follows and that other load barely disturbs."""
    out: dict[str, Any] = {}
    for kind, key, cost in (("submit", "accepted_per_s", "cpu_ms_per_job"),
                            ("worker", "tasks_per_s", "cpu_ms_per_task")):
        ratios = [r[f"{kind}_ratio"] for r in rounds]
        cpu = [r[f"{kind}_on"][cost] / r[f"{kind}_off"][cost] for r in rounds
               if r[f"{kind}_on"][cost] and r[f"{kind}_off"][cost]]
        median = statistics.median(ratios)
        cpu_median = statistics.median(cpu)
        out[kind] = {
            "median_on": round(statistics.median(r[f"{kind}_on"][key] for r in rounds), 2),
            "median_off": round(statistics.median(r[f"{kind}_off"][key] for r in rounds), 2),
            "median_ratio_on_off": round(median, 4),
            "overhead": round(1 - median, 4),
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "cpu_ms_on": round(statistics.median(r[f"{kind}_on"][cost] for r in rounds), 3),
            "cpu_ms_off": round(statistics.median(r[f"{kind}_off"][cost] for r in rounds), 3),
            "cpu_median_ratio_on_off": round(cpu_median, 4),
            "cpu_overhead": round(cpu_median - 1, 4),
            "cpu_ratio_min": round(min(cpu), 4), "cpu_ratio_max": round(max(cpu), 4),
            "meets_goal_cpu": cpu_median - 1 < GOAL,
            "meets_goal_throughput": 1 - median < GOAL,
        }
    return out


def table(rounds: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = [f"{'round':>5} {'order':>7} | {'submit/s on':>11} {'off':>6} {'on/off':>6} "
             f"{'CPU ms on':>9} {'off':>6} | {'tasks/s on':>10} {'off':>6} {'on/off':>6} "
             f"{'CPU ms on':>9} {'off':>6}"]
    for r in rounds:
        sub_on, sub_off, w_on, w_off = (r[k] for k in ("submit_on", "submit_off",
                                                        "worker_on", "worker_off"))
        lines.append(
            f"{r['round']:>5} {r['order']:>7} | {sub_on['accepted_per_s']:>11.1f} "
            f"{sub_off['accepted_per_s']:>6.1f} {r['submit_ratio']:>6.3f} "
            f"{sub_on['cpu_ms_per_job'] or 0:>9.2f} {sub_off['cpu_ms_per_job'] or 0:>6.2f} | "
            f"{w_on['tasks_per_s']:>10.2f} {w_off['tasks_per_s']:>6.2f} "
            f"{r['worker_ratio']:>6.3f} {w_on['cpu_ms_per_task']:>9.2f} "
            f"{w_off['cpu_ms_per_task']:>6.2f}")
    for kind, unit, per in (("submit", "jobs/s accepted", "job"), ("worker", "tasks/s", "task")):
        s = summary[kind]
        lines.append(f"{kind}: throughput median on {s['median_on']} vs off {s['median_off']} "
                     f"{unit}; median on/off {s['median_ratio_on_off']:.3f} -> overhead "
                     f"{s['overhead'] * 100:+.1f} % (rounds {s['ratio_min']:.3f}.."
                     f"{s['ratio_max']:.3f}); goal < {GOAL * 100:g} %: "
                     f"{'met' if s['meets_goal_throughput'] else 'NOT met'}")
        lines.append(f"{kind}: CPU per {per} median on {s['cpu_ms_on']} vs off "
                     f"{s['cpu_ms_off']} ms; median on/off {s['cpu_median_ratio_on_off']:.3f} "
                     f"-> overhead {s['cpu_overhead'] * 100:+.1f} % (rounds "
                     f"{s['cpu_ratio_min']:.3f}..{s['cpu_ratio_max']:.3f}); goal < "
                     f"{GOAL * 100:g} %: {'met' if s['meets_goal_cpu'] else 'NOT met'}")
    return "\n".join(lines)


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    image = small_jpeg()
    body = multipart({"image": image}, "zebra-224.jpg")
    backlog = {f"VISIONQ_MAX_BACKLOG_{t.upper()}": str(HUGE_BACKLOG)
               for t in ("face", "detect", "classify")}
    stacks = {
        ("submit", True): MetricsStack([args.task], metrics=True, workers=False, env=backlog,
                                       api_workers=args.api_workers),
        ("submit", False): MetricsStack([args.task], metrics=False, workers=False,
                                        env=backlog, api_workers=args.api_workers),
        ("worker", True): MetricsStack([args.task], metrics=True, worker_concurrency=1,
                                       env=backlog, api_workers=1),
        ("worker", False): MetricsStack([args.task], metrics=False, worker_concurrency=1,
                                        env=backlog, api_workers=1),
    }
    results.data.update({
        "goal_overhead": GOAL, "task": args.task, "image_bytes": len(image),
        "rounds_requested": args.rounds, "submit_seconds": args.submit_seconds,
        "mode": args.mode, "concurrency": args.concurrency,
        "jobs_per_worker_phase": args.jobs,
        "scrape_interval_s": args.scrape_interval,
        "stacks": {f"{kind}_{'on' if on else 'off'}": None for kind, on in stacks}})
    started: list[MetricsStack] = []
    try:
        for stack in stacks.values():
            stack.start()
            started.append(stack)
        for (kind, on), stack in stacks.items():
            stack.wait_ready()
            results.data["stacks"][f"{kind}_{'on' if on else 'off'}"] = stack.describe()
        apps = {on: _control(stacks[("worker", on)]) for on in (True, False)}
        say("warm-up")
        for on in (True, False):
            submit_phase([stacks[("submit", on)]], args, body, 2)
            worker_phase([(stacks[("worker", on)], apps[on])], args, body,
                         max(10, args.jobs // 10))
        rounds = []
        for index in range(args.rounds):
            order = (True, False) if index % 2 == 0 else (False, True)
            row: dict[str, Any] = {"round": index + 1,
                                   "order": "on-off" if order[0] else "off-on"}
            # paired: both variants at once, sharing whatever else the machine does;
            # alternate: one after the other.
            groups = [order] if args.mode == "paired" else [(on,) for on in order]
            for group in groups:
                measured = submit_phase([stacks[("submit", on)] for on in group], args, body,
                                        args.submit_seconds)
                for on, figures in zip(group, measured, strict=True):
                    row[f"submit_{'on' if on else 'off'}"] = figures
            for group in groups:
                measured = worker_phase([(stacks[("worker", on)], apps[on]) for on in group],
                                        args, body, args.jobs)
                for on, figures in zip(group, measured, strict=True):
                    row[f"worker_{'on' if on else 'off'}"] = figures
            row["submit_ratio"] = _ratio(row["submit_on"]["accepted_per_s"],
                                         row["submit_off"]["accepted_per_s"])
            row["worker_ratio"] = _ratio(row["worker_on"]["tasks_per_s"],
                                         row["worker_off"]["tasks_per_s"])
            say(f"round {index + 1}/{args.rounds} ({row['order']}): submit on/off "
                f"{row['submit_on']['accepted_per_s']}/{row['submit_off']['accepted_per_s']}"
                f" = {row['submit_ratio']:.3f}; worker on/off "
                f"{row['worker_on']['tasks_per_s']}/{row['worker_off']['tasks_per_s']} = "
                f"{row['worker_ratio']:.3f}")
            rounds.append(row)
    finally:
        for stack in reversed(started):
            stack.stop()
    summary = summarise(rounds)
    results.data.update({"rounds": rounds, "summary": summary})
    print(table(rounds, summary), flush=True)
    results.finish()
    return results.data


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options, for ``python -m bench.metrics_overhead`` or a ``python -m bench``
    subcommand (``add_arguments(sub.add_parser(...))`` then ``run(args, argv)``)."""
    p.add_argument("--rounds", type=int, default=8, help="A/B rounds (default %(default)s)")
    p.add_argument("--mode", choices=("paired", "alternate"), default="paired",
                   help="paired: on and off measured at the same time, so a noisy "
                        "neighbour hits both; alternate: one after the other, order "
                        "swapped every round (default %(default)s)")
    p.add_argument("--submit-seconds", type=float, default=5,
                   help="length of each submit phase (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=8,
                   help="submit clients (default %(default)s)")
    p.add_argument("--jobs", type=int, default=150,
                   help="jobs per worker phase (default %(default)s)")
    p.add_argument("--task", default="classify", choices=("classify", "face", "detect"),
                   help="the worker's task (default %(default)s: the cheapest model)")
    p.add_argument("--api-workers", type=int, default=2,
                   help="gunicorn workers of the submit stacks (default %(default)s)")
    p.add_argument("--scrape-interval", type=float, default=5,
                   help="seconds between /metrics scrapes of the 'on' API; 0: none "
                        "(default %(default)s)")
    p.add_argument("--name", default="metrics_overhead",
                   help="writes bench/results/<name>.json (default %(default)s)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_overhead",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    add_arguments(parser)
    args = parser.parse_args(argv)
    data = run(args, ["metrics-overhead", *argv])
    return 0 if all(s["meets_goal_cpu"] for s in data["summary"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
