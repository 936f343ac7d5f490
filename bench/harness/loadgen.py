"""Open-loop load generation: Poisson arrivals at a set rate, each request its own asyncio
task, so a slow server never slows the arrivals down (a closed loop would hide overload).

Latency is measured from the *scheduled* arrival time, so if the client itself falls
behind (CPU contention) that delay counts against the server's figures rather than being
silently dropped (coordinated omission); the client's own lag is reported too.  Every
point is bounded by a duration, a request count and a per-request deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.common import latency_summary, percentile, say
from bench.harness.http import HttpError, Target, multipart, request

FINAL = ("succeeded", "failed")
DEEPSTACK_PATHS = {"classify": "/v1/vision/classify", "detect": "/v1/vision/detection",
                   "face": "/v1/vision/face"}


@dataclass
class Outcome:
    """One logical request: ``latency_s`` from its scheduled arrival to its answer."""

    scheduled: float
    latency_s: float
    kind: str
    """``ok`` or the error's kind (``http_503``, ``timeout``, ``job_failed:<code>``...)."""
    lag_s: float = 0.0
    attempts: int = 1
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


class RequestFailed(Exception):
    def __init__(self, kind: str, attempts: int = 1) -> None:
        super().__init__(kind)
        self.kind = kind
        self.attempts = attempts


Call = Callable[[int, float], Awaitable[tuple[int, dict[str, Any]]]]
"""``call(image_index, deadline)`` -> (attempts, server timings); raises RequestFailed."""


@dataclass
class Bodies:
    """Multipart bodies built once per image (the same bytes for every system)."""

    items: list[tuple[bytes, str]]

    @classmethod
    def of(cls, paths: Sequence[Path]) -> Bodies:
        return cls([multipart(p.read_bytes(), p.name) for p in paths])

    def __getitem__(self, index: int) -> tuple[bytes, str]:
        return self.items[index % len(self.items)]


def _remaining(deadline: float) -> float:
    return deadline - asyncio.get_running_loop().time()


def _check(status: int, expected: int, body: bytes) -> None:
    if status != expected:
        code = ""
        with contextlib.suppress(ValueError, AttributeError):
            code = json.loads(body).get("code") or ""
        raise RequestFailed(f"http_{status}" + (f":{code}" if code else ""))


def _succeeded(job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A final job's (attempts, server timings), or ``RequestFailed`` if it failed."""
    if job["status"] != "succeeded":
        raise RequestFailed(f"job_failed:{job.get('code')}")
    return 1, job.get("timings") or {}


def jobs_call(url: str, task: str, bodies: Bodies, max_wait_s: float = 20,
              wait_in_submit: bool = False) -> Call:
    """visionq's own API: ``POST /v1/jobs`` then long-poll ``GET /v1/jobs/<id>?wait=``; with
    ``wait_in_submit``, one request: ``POST /v1/jobs?wait=`` answers 200 with the finished
    job, and a 202 (not done within the wait, which runs to the deadline) is a miss."""
    target = Target.parse(url)

    def wait(deadline: float) -> str:
        return f"wait={max(0.0, min(max_wait_s, _remaining(deadline) - 0.5)):.2f}"

    async def call(index: int, deadline: float) -> tuple[int, dict[str, Any]]:
        body, ctype = bodies[index]
        path = f"/v1/jobs?task={task}" + (f"&{wait(deadline)}" if wait_in_submit else "")
        try:
            response = await request(target, "POST", path, body=body,
                                     headers={"Content-Type": ctype},
                                     timeout_s=_remaining(deadline))
            if wait_in_submit and response.status == 200:
                return _succeeded(response.json())
            _check(response.status, 202, response.body)
            if wait_in_submit:
                raise RequestFailed("deadline")
            job_id = response.json()["id"]
            while True:
                response = await request(target, "GET", f"/v1/jobs/{job_id}?{wait(deadline)}",
                                         timeout_s=_remaining(deadline))
                _check(response.status, 200, response.body)
                job = response.json()
                if job["status"] in FINAL:
                    return _succeeded(job)
                if _remaining(deadline) <= 0.5:
                    raise RequestFailed("deadline")
        except HttpError as exc:
            raise RequestFailed(exc.kind) from exc

    return call


def post_call(url: str, path: str, bodies: Bodies, expected: int = 200) -> Call:
    """One synchronous POST: DeepStack endpoints, the sync baseline, or submit-only."""
    target = Target.parse(url)

    async def call(index: int, deadline: float) -> tuple[int, dict[str, Any]]:
        body, ctype = bodies[index]
        try:
            response = await request(target, "POST", path, body=body,
                                     headers={"Content-Type": ctype},
                                     timeout_s=_remaining(deadline))
        except HttpError as exc:
            raise RequestFailed(exc.kind) from exc
        _check(response.status, expected, response.body)
        server = {}
        if expected == 200:
            payload = response.json()
            if payload.get("success") is False:
                raise RequestFailed(f"failed:{payload.get('code')}")
            if "duration" in payload:
                server["duration_ms"] = payload["duration"]
            if "inferenceMs" in payload:  # the worker's decode + model time (api.codeproject)
                server["inference_ms"] = payload["inferenceMs"]
        return 1, server

    return call


async def open_loop(call: Call, rate: float, duration_s: float, *, max_requests: int = 100_000,
                    deadline_s: float = 10.0, max_inflight: int = 2000,
                    seed: int = 1) -> list[Outcome]:
    """Poisson arrivals at ``rate``/s for ``duration_s`` (at most ``max_requests``); each
    request may take ``deadline_s``; beyond ``max_inflight`` open requests an arrival is
    counted as ``client_overload`` instead of being delayed."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    outcomes: list[Outcome] = []
    inflight = 0

    async def one(scheduled: float, index: int) -> None:
        nonlocal inflight
        inflight += 1
        lag = loop.time() - scheduled
        try:
            attempts, server = await asyncio.wait_for(call(index, scheduled + deadline_s),
                                                      max(0.01, scheduled + deadline_s
                                                          - loop.time()))
            outcomes.append(Outcome(scheduled, loop.time() - scheduled, "ok", lag, attempts,
                                    server))
        except RequestFailed as exc:
            outcomes.append(Outcome(scheduled, loop.time() - scheduled, exc.kind, lag,
                                    exc.attempts))
        except TimeoutError:
            outcomes.append(Outcome(scheduled, loop.time() - scheduled, "deadline", lag))
        except Exception as exc:  # noqa: BLE001 - tallied, never kills the run
            outcomes.append(Outcome(scheduled, loop.time() - scheduled,
                                    f"client_error:{type(exc).__name__}", lag))
        finally:
            inflight -= 1

    start = loop.time() + 0.05
    arrival = start
    tasks = []
    for index in range(max_requests):
        arrival += rng.expovariate(rate)
        if arrival - start > duration_s:
            break
        delay = arrival - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if inflight >= max_inflight:
            outcomes.append(Outcome(arrival, 0.0, "client_overload"))
            continue
        tasks.append(asyncio.create_task(one(arrival, index)))
    if tasks:
        await asyncio.wait(tasks, timeout=deadline_s + 5)
    for task in tasks:
        task.cancel()
    return outcomes


def summarise(outcomes: Sequence[Outcome], rate: float, duration_s: float,
              slo_s: float) -> dict[str, Any]:
    """Offered rate, throughput, goodput (ok within ``slo_s``), latency percentiles of the
    successful requests, errors by kind, the client's own lag and server-side timings."""
    ok = [o for o in outcomes if o.ok]
    good = [o for o in ok if o.latency_s <= slo_s]
    start = min((o.scheduled for o in outcomes), default=0.0)
    last_done = max((o.scheduled + o.latency_s for o in ok), default=start)
    span = max(duration_s, last_done - start) if ok else duration_s
    errors = Counter(o.kind for o in outcomes if not o.ok)
    lags = sorted(o.lag_s for o in outcomes)
    summary: dict[str, Any] = {
        "rate_set": rate, "duration_s": duration_s, "slo_ms": round(slo_s * 1000),
        "sent": len(outcomes), "offered_rps": round(len(outcomes) / duration_s, 2),
        "ok": len(ok), "throughput_rps": round(len(ok) / span, 2),
        "goodput_rps": round(len(good) / duration_s, 2),
        "latency": latency_summary(o.latency_s for o in ok),
        "errors": dict(errors.most_common()),
        "attempts_mean": round(sum(o.attempts for o in outcomes) / len(outcomes), 2)
        if outcomes else None,
        "client_lag_p99_ms": round((percentile(lags, 99) or 0) * 1000, 1),
    }
    for name in ("queue_wait_ms", "inference_ms", "duration_ms"):
        values = sorted(float(o.server[name]) for o in ok if o.server.get(name) is not None)
        if values:
            summary[f"server_{name}_p50"] = round(percentile(values, 50) or 0, 1)
    # What the stack adds to the model, request by request: round trip - the worker's
    # decode + model time (robust to the model's own noise on a shared machine).
    overhead = sorted(o.latency_s * 1000 - float(o.server["inference_ms"]) for o in ok
                      if o.server.get("inference_ms") is not None)
    if overhead:
        summary["stack_overhead_ms"] = {"p50": round(percentile(overhead, 50) or 0, 1),
                                        "p90": round(percentile(overhead, 90) or 0, 1)}
    return summary


def run_point(call: Call, rate: float, duration_s: float, slo_s: float,
              deadline_s: float, max_requests: int, seed: int = 1,
              label: str = "") -> tuple[dict[str, Any], list[Outcome]]:
    outcomes = asyncio.run(open_loop(call, rate, duration_s, max_requests=max_requests,
                                     deadline_s=deadline_s, seed=seed))
    summary = summarise(outcomes, rate, duration_s, slo_s)
    lat = summary["latency"]
    say(f"{label} offered {summary['offered_rps']}/s -> ok {summary['throughput_rps']}/s, "
        f"goodput {summary['goodput_rps']}/s, p50 {lat['p50_ms']} p99 {lat['p99_ms']} ms, "
        f"errors {summary['errors'] or 0}")
    return summary, outcomes


def sweep(call: Call, rates: Sequence[float], duration_s: float, slo_s: float,
          deadline_s: float, max_requests: int, label: str,
          cooldown: Callable[[], None] | None = None,
          cpu: Callable[[], float] | None = None) -> tuple[list[dict[str, Any]],
                                                           dict[float, list[float]]]:
    """One point per rate; returns the summaries and, per rate, the sorted latencies (s)
    of successful requests for the CDF plot.  ``cpu()`` (CPU seconds of the system under
    test) gives CPU per successful request, a figure other users' load barely moves."""
    points, latencies = [], {}
    for rate in rates:
        cpu0 = cpu() if cpu else 0.0
        summary, outcomes = run_point(call, rate, duration_s, slo_s, deadline_s, max_requests,
                                      label=f"{label} @{rate:g}/s:")
        if cpu is not None:
            used = cpu() - cpu0
            summary["server_cpu_s"] = round(used, 2)
            summary["server_cpu_ms_per_ok"] = round(used * 1000 / summary["ok"], 2) \
                if summary["ok"] else None
        points.append(summary)
        latencies[rate] = sorted(o.latency_s for o in outcomes if o.ok)
        if cooldown is not None:
            cooldown()
    return points, latencies
