"""``python -m bench.profile_stages``: CPU-ms per job by stage from py-spy collapsed stacks
(issue 14).  The same analysis runs on the "before" and the "after" profiles.

Input: collapsed stacks (``py-spy record --format raw [--subprocesses]``: one line per
distinct stack, ``frame;frame;...;leaf <count>``, root first) and the number of jobs done
while they were recorded.  Either a directory written by ``python -m bench.profile_record``
(its ``<scenario>.json`` files say which collapsed files, how many jobs and the CPU per
job measured from /proc), or collapsed files given by hand::

    python -m bench.profile_stages bench/results/profiles/before          # -> stages.json
    python -m bench.profile_stages --collapsed api.txt --jobs 4500 [--cpu-ms-per-job 3.1]
    python -m bench.profile_stages DIR --compare bench/results/profiles/before/stages.json

Method.  Every stack is given ONE stage by the first rule of ``RULES`` that matches it
(a rule looks at the leaf frame and/or at any frame of the stack; frames read
``function (path:line)``, paths relative to site-packages or to the repository).  Stacks
of threads that are only waiting (a pool thread on its queue, a selector, a pub/sub read,
a prefork child waiting for its next task) are "idle" and left out: py-spy samples only
running or runnable threads, but it checks that just before pausing the process, so a
blocked thread still shows up in a few % of the samples, and an API has 32 of them.
Stacks blocked in recv() for a Redis reply (or for the HTTP client's FIN) are "wait" and
left out too: on a loaded machine a thread woken by the reply stays runnable until it
gets a core, and py-spy counts all of that (10x the round trip's real CPU, measured by
``bench.stage_costs``); the send, the parsing and redis-py's pool stay in the stage.
The remaining samples give each stage's SHARE of the process's CPU; CPU-ms per job =
share x the process tree's CPU per job measured from /proc without the profiler
(``--cpu-ms-per-job``; else samples x 1000/hz / jobs, which over-counts on a busy machine
because runnable-but-waiting threads are sampled too).

Caveat: the same runnable-but-waiting bias remains, smaller, wherever a thread wakes up
(HTTP accept/recv, kombu's event loop), so check stage figures against
``bench.stage_costs`` (thread CPU per call, immune to the machine's load) times the calls
per job; ``redis_commands_per_job`` (``INFO commandstats``) counts the round trips.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from zlib import crc32

STAGES: dict[str, str] = {
    "http": "gunicorn (accept, parse, respond, close), Flask/werkzeug routing and "
            "request/response objects, the handlers' own code, auth guard",
    "multipart": "multipart/form-data parsing (werkzeug formparser, spooled temp files)",
    "redis": "visionq's own Redis round trips (job record create/get/start, blob "
             "put/get/delete, backlog LLEN, idempotency) incl. redis-py and its "
             "connection pool",
    "celery_publish": "Celery send_task -> kombu producer -> LPUSH (API)",
    "celery_consume": "Celery/kombu/billiard per-task work: BRPOP, message decode, "
                      "unacked bookkeeping and ack, request objects, prefork pipe IPC "
                      "(main <-> child), the task tracer",
    "celery_events": "task events for Flower (received/started/succeeded: PUBLISH)",
    "decode": "image probe (API) and decode (worker): Pillow, EXIF orientation, resize "
              "on decode",
    "model": "the model plugin: preprocessing and inference (LiteRT / ONNX Runtime / "
             "dlib)",
    "result_write": "JobStore.succeed/fail: the finish script (HSET, counters, PUBLISH)",
    "wakeup": "long-poll: JobStore.wait (SUBSCRIBE on a new pub/sub connection, HGETALL "
              "re-reads, close) minus the time blocked waiting",
    "metrics": "Prometheus hooks (Flask before/after request, Celery task signals, job "
               "outcome records: prometheus_client multiprocess files)",
    "autoscale_marks": "the autoscaler's per-task Redis writes from Celery signals "
                       "(mark_busy, mark_idle, record_service_time)",
    "logging": "log records (Celery's and visionq's per-task INFO lines)",
    "job_runner": "visionq's task body glue (workers/runner.py, tasks/) outside the "
                  "stages above",
    "background": "heartbeat thread and reaper sweep",
    "other": "anything no rule names",
}
"""Stages, in the order the tables show them.  ``idle`` (waiting) is not a stage."""

OURS = r"\((api|visionq|workers|tasks|monitoring|autoscale)/"


@dataclass(frozen=True)
class Rule:
    """``stage`` when the leaf frame matches ``leaf`` (if given) and some frame matches
    each pattern of ``requires`` (all of them)."""

    stage: str
    leaf: str | None = None
    requires: tuple[str, ...] = ()
    why: str = ""
    _compiled: tuple[re.Pattern[str] | None, tuple[re.Pattern[str], ...]] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", (
            re.compile(self.leaf) if self.leaf else None,
            tuple(re.compile(p) for p in self.requires)))

    def matches(self, frames: Sequence[str]) -> bool:
        leaf, requires = self._compiled
        if leaf is not None and not (frames and leaf.search(frames[-1])):
            return False
        return all(any(p.search(f) for f in frames) for p in requires)


RULES: tuple[Rule, ...] = (
    # -- waiting, not CPU ------------------------------------------------------------------
    Rule("idle", leaf=r"^_worker \(concurrent/futures/thread\.py",
         why="gthread pool thread blocked on its work queue"),
    Rule("idle", leaf=r"^(Condition\.wait|Event\.wait|Thread\.join|Thread\._wait_for_tstate_lock"
                      r"|Queue\.get|SimpleQueue\.get|Arbiter\.(sleep|wait_for_signals)|sleep) \(",
         why="lock/condition/queue waits, sleeps, gunicorn's master waiting"),
    Rule("idle", leaf=r"^(\w*Selector\.select|_epoll\.poll|_poll\.poll|select|poll) \(",
         why="selectors: gunicorn's and kombu's event loops waiting"),
    Rule("idle", leaf=r"^SocketBuffer\.(_read_from_socket|can_read) \(",
         requires=(r"^PubSub\.(get_message|listen) \(",),
         why="long-poll blocked on the pub/sub socket"),
    Rule("wait", leaf=r"^SocketBuffer\._read_from_socket \(redis/",
         why="blocked in recv() for a Redis reply: the reply's own CPU is a few us, the "
             "samples are the thread waiting for Redis, then for a core"),
    Rule("wait", leaf=r"^close_graceful \(gunicorn/",
         why="gunicorn draining the socket until the client closes"),
    Rule("idle", leaf=r"^Connection\._recv \(billiard/",
         requires=(r"^_SimpleQueue\.get_payload \(",),
         why="prefork child waiting for its next task"),
    # -- the stages, most specific first -----------------------------------------------------
    Rule("autoscale_marks", requires=(r"\(autoscale/observe\.py|^ScalingHints\."
                                      r"|^(mark_busy|mark_idle|record_service_time) \(visionq/"
                                      r"|^_(record_service_time|mark_busy|mark_idle) \(workers/",),
         why="the autoscaler's marks and the worker hooks feeding them (before: "
             "autoscale.observe + workers/signals.py; after: visionq/broker.py + "
             "workers/hooks.py ScalingHints)"),
    Rule("metrics", requires=(r"\((monitoring|prometheus_client)/"
                              r"|\((workers/hooks_metrics|api/metrics)\.py",),
         why="monitoring/*, prometheus_client, the metrics hooks (api/metrics.py, "
             "workers/hooks_metrics.py after the refactor)"),
    Rule("celery_events", requires=(r"\(celery/events/",), why="EventDispatcher"),
    Rule("logging", requires=(r"\(logging/",), why="stdlib logging"),
    Rule("model", requires=(r"\(workers/plugins/|\((ai_edge_litert|tflite_runtime|onnxruntime"
                            r"|dlib|face_recognition)/",),
         why="model plugins and inference runtimes"),
    Rule("decode", requires=(r"\(visionq/imaging\.py",), why="probe / decode"),
    Rule("result_write", requires=(r"^JobStore\.(succeed|fail|finish|_finish_with) \(",),
         why="the finish script"),
    Rule("wakeup", requires=(r"^JobStore\.(wait|_wait_\w+) \(|\(visionq/wakeup\.py",),
         why="long-poll: JobStore.wait, and the per-process DoneListener once there is one"),
    Rule("celery_publish", requires=(r"^(Celery\.send_task|enqueue) \((celery|tasks)/",),
         why="send_task"),
    Rule("background", requires=(r"\(workers/(heartbeat|reaper)\.py",),
         why="heartbeat thread"),
    Rule("redis", requires=(r"\(redis/", OURS), why="redis-py called from visionq code"),
    Rule("job_runner", requires=(r"\((workers|tasks)/",), why="task body glue"),
    Rule("celery_consume", requires=(r"\((celery|kombu|billiard|vine|amqp)/",),
         why="worker machinery (and kombu's own Redis commands)"),
    Rule("multipart", requires=(r"\(werkzeug/(formparser|sansio/multipart)\.py",),
         why="form parsing"),
    Rule("http", requires=(r"\((gunicorn|flask|werkzeug|api)/",), why="serving HTTP"),
    Rule("redis", requires=(r"\(redis/",), why="redis-py from elsewhere"),
)
"""First match wins; anything unmatched is ``other``."""
NOT_CPU = ("idle", "wait")
"""Pseudo-stages left out of the CPU shares (their sample counts are reported)."""


_API_SUBMIT = {"redis": [("redis_llen", 1), ("blob_put", 1), ("job_create", 1)],
               "celery_publish": [("celery_enqueue", 1)]}
_API_WAIT = {"wakeup": [("pubsub_cycle", 1), ("job_get", 3)]}
_WORKER = {"redis": [("job_start", 1), ("job_get", 1), ("blob_get", 1), ("blob_delete", 1)],
           "result_write": [("job_succeed", 1)], "celery_events": [("celery_event", 3)],
           "autoscale_marks": [("autoscale_marks", 1)], "metrics": [("metrics_record_job", 1)]}
RECIPES: dict[str, dict[str, dict[str, list[tuple[str, float]]]]] = {
    "api_submit": {"api": {**_API_SUBMIT, "metrics": [("metrics_request", 1)]}},
    "worker_classify": {"api": {**_API_SUBMIT, **_API_WAIT,
                                "metrics": [("metrics_request", 2)]}, "worker": _WORKER},
    "deepstack_detect": {"api": {**_API_SUBMIT, **_API_WAIT,
                                 "metrics": [("metrics_request", 1)]}, "worker": _WORKER},
}
CALIBRATION = """Calibration: for the stages py-spy over-counts (those that wait on Redis),
CPU per job = ``bench.stage_costs`` CPU per call x calls per job, as read from the code of
the BEFORE state and checked against ``INFO commandstats``.  Per job: in the API LLEN,
SET, one pipeline, LPUSH; a long-poll is HGETALL, SUBSCRIBE on a new connection, HGETALL,
HGETALL after the wake-up; in the worker EVALSHA start, HGETALL, GET, EVALSHA finish, DEL,
3 task-event PUBLISHes, the autoscaler's ZADD/ZREM/pipeline and the job metrics.  The
other stages keep their py-spy shares of the rest of the process's /proc CPU.  Update the
call counts when a change removes or adds a call before comparing "after" with "before"."""


def calibrate(analysis: dict[str, Any], recipe: dict[str, list[tuple[str, float]]],
              costs: dict[str, Any]) -> dict[str, Any]:
    """Bottom-up figures for the stages in ``recipe``, the rest of the process's CPU per
    job split between the other stages by their py-spy shares."""
    fixed = {stage: sum(costs[key]["cpu_us_median"] * calls for key, calls in items) / 1000
             for stage, items in recipe.items()}
    total = analysis["cpu_ms_per_job"] or 0.0
    others = {stage: row["cpu_ms_per_job"] for stage, row in analysis["stages"].items()
              if stage not in fixed}
    rest = max(0.0, total - sum(fixed.values()))
    scale = rest / sum(others.values()) if sum(others.values()) else 0.0
    table = {stage: round(v, 3) for stage, v in fixed.items()}
    table.update({stage: round(v * scale, 3) for stage, v in others.items()})
    ordered = {s: table[s] for s in [*STAGES, *sorted(set(table) - set(STAGES))] if s in table}
    return {"cpu_ms_per_job": ordered, "bottom_up_stages": sorted(fixed),
            "rest_scale": round(scale, 3)}


def classify(frames: Sequence[str]) -> str:
    for rule in RULES:
        if rule.matches(frames):
            return rule.stage
    return "other"


@dataclass
class Profile:
    """Collapsed stacks of one process tree: (process roots, frames, count) rows."""

    rows: list[tuple[tuple[str, ...], tuple[str, ...], int]]

    @classmethod
    def read(cls, paths: Iterable[Path]) -> Profile:
        rows = []
        for path in paths:
            for line in Path(path).read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                parts = stack.split(";")
                roots = tuple(p for p in parts if p.startswith("process "))
                frames = tuple(p for p in parts if not p.startswith("process "))
                rows.append((roots, frames, int(count)))
        return cls(rows)


def _function(frame: str) -> str:
    """``Redis.execute_command (redis/client.py:621)`` -> without the line number."""
    return re.sub(r":\d+\)$", ")", frame)


def _role(roots: Sequence[str]) -> str:
    """py-spy --subprocesses roots each stack at its process chain: one entry is the
    process attached to (gunicorn master, Celery main process), two a child of it."""
    return "main" if len(roots) <= 1 else "child"


def analyse(profile: Profile, jobs: int, hz: float = 100.0,
            cpu_ms_per_job: float | None = None, top: int = 10) -> dict[str, Any]:
    """Stage table of one process tree."""
    stages: Counter[str] = Counter()
    by_role: dict[str, Counter[str]] = defaultdict(Counter)
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    for roots, frames, count in profile.rows:
        stage = classify(frames)
        if stage in NOT_CPU:
            waiting[stage] += count
            continue
        stages[stage] += count
        by_role[_role(roots)][stage] += count
        if stage != "model" and frames:
            self_time[f"{_function(frames[-1])} [{stage}]"] += count
            for name in {_function(f) for f in frames if re.search(OURS, f)}:
                inclusive[name] += count
    busy = sum(stages.values())
    sampled_ms = 1000.0 / hz
    scale = (cpu_ms_per_job / busy) if (cpu_ms_per_job and busy) else \
        (sampled_ms / jobs if jobs else 0.0)

    def table(counter: Counter[str]) -> dict[str, dict[str, float]]:
        return {stage: {"samples": counter[stage],
                        "share": round(counter[stage] / busy, 4) if busy else 0.0,
                        "cpu_ms_per_job": round(counter[stage] * scale, 3)}
                for stage in [*STAGES, *sorted(set(counter) - set(STAGES))] if counter[stage]}

    def ranked(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": name, "samples": n, "share": round(n / busy, 4),
                 "cpu_ms_per_job": round(n * scale, 3)} for name, n in counter.most_common(top)]

    return {
        "jobs": jobs, "hz": hz, "samples": busy + sum(waiting.values()),
        "samples_idle": waiting["idle"], "samples_wait": waiting["wait"],
        "samples_cpu": busy,
        "sampled_cpu_ms_per_job": round(busy * sampled_ms / jobs, 2) if jobs else None,
        "cpu_ms_per_job": round(cpu_ms_per_job, 2) if cpu_ms_per_job else
        (round(busy * sampled_ms / jobs, 2) if jobs else None),
        "cpu_ms_from": "/proc (no profiler), split by py-spy shares" if cpu_ms_per_job
        else "py-spy samples x 1000/hz",
        "stages": table(stages),
        "by_process": {role: table(counter) for role, counter in sorted(by_role.items())},
        "top_self_non_model": ranked(self_time),
        "top_inclusive_visionq_non_model": ranked(inclusive),
    }


BOOT = re.compile(
    r"^(_run_module_as_main|_run_code|<module>|main|Command\.\w+|Group\.invoke|Context\.invoke"
    r"|pass_context\.<locals>\.new_func|handle_preload_options\.<locals>\.caller|worker"
    r"|WorkController\.start|Blueprint\.start|StartStopStep\.start|BasePool\.start"
    r"|TaskPool\.on_start|AsynPool\.(__init__|_create_worker_process)"
    r"|Pool\.(__init__|_create_worker_process)|BaseProcess\.(start|_bootstrap|run)"
    r"|ForkProcess\._Popen|Popen\.(__init__|_launch)|run|Application\.run"
    r"|BaseApplication\.run|Arbiter\.(run|manage_workers|spawn_workers|spawn_worker)"
    r"|ThreadWorker\.(init_process|run)|Worker\.init_process"
    r"|Thread\.(_bootstrap|_bootstrap_inner|run)|_worker|_WorkItem\.run) \(")
"""Start-up frames every stack of a process shares (runpy, click, Celery's bootsteps,
billiard's fork, gunicorn's arbiter, thread start): left out of the CPU flame graphs."""


def cpu_stacks(profile: Profile) -> Counter[tuple[str, ...]]:
    """The non-idle stacks, each rooted at its stage (``stage:redis;...``) and its process
    role, without the shared start-up frames, for a flame graph of CPU only."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for roots, frames, count in profile.rows:
        stage = classify(frames)
        if stage not in NOT_CPU:
            start = 0
            while start < len(frames) - 1 and BOOT.match(frames[start]):
                start += 1
            stacks[(f"stage:{stage}", f"process:{_role(roots)}", *frames[start:])] += count
    return stacks


def write_collapsed(stacks: Counter[tuple[str, ...]], path: Path) -> None:
    path.write_text("".join(f"{';'.join(k)} {n}\n" for k, n in sorted(stacks.items())))


def flamegraph_svg(stacks: Counter[tuple[str, ...]], path: Path, title: str,
                   width: int = 1200, row: int = 16, min_px: float = 0.3) -> None:
    """A static flame graph (hover a box for its name, samples and share)."""
    tree: dict[str, Any] = {"n": 0, "kids": {}}
    for frames, count in stacks.items():
        node = tree
        node["n"] += count
        for frame in frames:
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    total = tree["n"] or 1
    scale = (width - 20) / total
    boxes: list[str] = []
    depth_max = 0

    def draw(node: dict[str, Any], x: float, depth: int) -> None:
        nonlocal depth_max
        for name, kid in sorted(node["kids"].items(), key=lambda item: -item[1]["n"]):
            w = kid["n"] * scale
            if w >= min_px:
                depth_max = max(depth_max, depth)
                boxes.append(_box(name, kid["n"], total, x, depth, w, row))
                draw(kid, x, depth + 1)
            x += w

    draw(tree, 10.0, 0)
    height = (depth_max + 1) * row + 50
    body = "".join(f'<g transform="translate(0,{height - 10})">{b}</g>' for b in boxes)
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="Verdana" font-size="11"><rect width="100%" height="100%" '
        f'fill="#fdfdf5"/><text x="{width / 2}" y="20" text-anchor="middle" '
        f'font-size="15">{escape(title)}</text>{body}</svg>\n')


def _box(name: str, count: int, total: int, x: float, depth: int, w: float,
         row: int) -> str:
    hue = crc32(name.split(" (")[0].encode()) % 60
    color = "rgb(120,170,230)" if name.startswith(("stage:", "process:")) else \
        f"hsl({hue},85%,{60 + (crc32(name.encode()) % 15)}%)"
    label = name if w > 7 * len(name) else name[: max(0, int(w / 7) - 2)] + ".."
    text = f'<text x="{x + 3:.1f}" y="{-depth * row - 4}">{escape(label)}</text>' \
        if w > 25 else ""
    return (f'<g><title>{escape(name)} ({count} samples, {100 * count / total:.2f} %)'
            f'</title><rect x="{x:.1f}" y="{-(depth + 1) * row}" width="{w:.1f}" '
            f'height="{row - 1}" fill="{color}" rx="2"/>{text}</g>')


def analyse_dir(directory: Path, top: int = 10,
                write_cpu_collapsed: bool = False) -> dict[str, Any]:
    """Every ``<scenario>.json`` of ``bench.profile_record`` in ``directory``; draws
    ``<collapsed>.cpu.svg`` (CPU-only flame graph rooted by stage) next to each collapsed
    file, and with ``write_cpu_collapsed`` its collapsed stacks (``.cpu.txt``)."""
    scenarios: dict[str, Any] = {}
    costs_path = directory / "stage_costs.json"
    costs = json.loads(costs_path.read_text())["results"] if costs_path.exists() else None
    for meta_path in sorted(directory.glob("*.json")):
        if meta_path.name in ("stages.json", "stage_costs.json"):
            continue
        meta = json.loads(meta_path.read_text())
        if "scenario" not in meta or "collapsed" not in meta:
            continue
        phases = meta["phases"]
        raw, plain, idle = phases["raw"], phases.get("plain"), phases.get("idle")
        result: dict[str, Any] = {
            "rate": meta["rate"], "image": meta.get("image"), "setup": meta.get("setup"),
            "jobs_profiled": raw["jobs"], "jobs_plain": plain["jobs"] if plain else None,
            "load_average": {p: [phases[p]["load_average_start"], phases[p]["load_average_end"]]
                             for p in phases},
            "latency_plain": (plain or {}).get("load", {}).get("latency"),
            "redis_commands_per_job": (plain or raw).get("redis_per_job"),
            "processes": {},
        }
        reference = plain if plain and plain.get("cpu_ms_per_job") else raw
        totals: dict[str, float] = defaultdict(float)
        calibrated: dict[str, float] = defaultdict(float)
        for what, collapsed in meta["collapsed"].items():
            group = _group_for(what, reference["cpu_ms_per_job"])
            profile = Profile.read([directory / collapsed])
            analysis = analyse(profile, raw["jobs"], meta.get("hz", 100),
                               reference["cpu_ms_per_job"][group], top)
            stem = Path(collapsed).stem
            stacks = cpu_stacks(profile)
            if write_cpu_collapsed:
                write_collapsed(stacks, directory / f"{stem}.cpu.txt")
            flamegraph_svg(stacks, directory / f"{stem}.cpu.svg",
                           f"{meta['scenario']} / {what}: CPU only (idle waits removed), "
                           f"rooted by stage")
            analysis["cpu_ms_per_job_profiled_run"] = raw["cpu_ms_per_job"][group]
            analysis["process_group"] = group
            result["processes"][what] = analysis
            for stage, row in analysis["stages"].items():
                totals[stage] += row["cpu_ms_per_job"]
            recipe = RECIPES.get(meta["scenario"], {}).get(what)
            if costs and recipe:
                analysis["calibrated"] = calibrate(analysis, recipe, costs)
                for stage, value in analysis["calibrated"]["cpu_ms_per_job"].items():
                    calibrated[stage] += value
        extra = {}
        if "redis" in reference["cpu_ms_per_job"]:
            extra["redis_server"] = reference["cpu_ms_per_job"]["redis"]
        if idle and reference.get("jobs"):
            per_s = sum(idle["cpu_ms_per_s"].values())
            extra["idle_stack_ms_per_job"] = round(per_s * reference["wall_s"]
                                                   / reference["jobs"], 3)
        result["table_cpu_ms_per_job"] = {s: round(v, 2) for s, v in totals.items()}
        result["table_cpu_ms_per_job"].update(extra)
        if calibrated:
            result["calibrated_cpu_ms_per_job"] = {s: round(v, 2)
                                                   for s, v in calibrated.items()}
            result["calibrated_cpu_ms_per_job"].update(extra)
        result["total_cpu_ms_per_job_profiled_processes"] = round(sum(totals.values()), 2)
        result["total_cpu_ms_per_job_all"] = round(
            sum(reference["cpu_ms_per_job"].values()), 2)
        scenarios[meta["scenario"]] = result
    return {"method": __doc__, "calibration": CALIBRATION, "recipes": RECIPES,
            "stage_costs_us": {k: v["cpu_us_median"] for k, v in (costs or {}).items()},
            "stages": STAGES,
            "rules": [{"stage": r.stage, "leaf": r.leaf, "requires": list(r.requires),
                       "why": r.why} for r in RULES],
            "scenarios": scenarios}


def _group_for(what: str, groups: dict[str, float]) -> str:
    """``api`` -> ``api``; ``worker`` -> ``worker-classify`` (the worker's /proc group)."""
    if what in groups:
        return what
    matches = [g for g in groups if g.startswith(what)]
    if len(matches) != 1:
        raise SystemExit(f"cannot tell which process group {what!r} is among {list(groups)}")
    return matches[0]


def markdown(result: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """Stages x scenarios, CPU-ms per job: ``calibrated (py-spy split)``, or with ``before``
    ``before -> after`` of the calibrated figures (py-spy's where there is no calibration).
    ``total`` is the /proc CPU of every process group (API, worker, Redis)."""
    scenarios = list(result["scenarios"])
    head = "| stage | " + " | ".join(scenarios) + " |"
    lines = [head, "|---" * (len(scenarios) + 1) + "|"]
    for stage in [*STAGES, "redis_server", "idle_stack_ms_per_job", "total"]:
        cells = [_cell(result, name, stage, before) for name in scenarios]
        if any(cells):
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _value(result: dict[str, Any] | None, scenario: str, stage: str,
           kind: str = "calibrated") -> float | None:
    if not result or scenario not in result["scenarios"]:
        return None
    data = result["scenarios"][scenario]
    if stage == "total":
        return data["total_cpu_ms_per_job_all"]
    table = data.get("calibrated_cpu_ms_per_job") if kind == "calibrated" else None
    return (table or data["table_cpu_ms_per_job"]).get(stage)


def _cell(result: dict[str, Any], scenario: str, stage: str,
          before: dict[str, Any] | None) -> str:
    now = _value(result, scenario, stage)
    if before is not None:
        old = _value(before, scenario, stage)
        return "" if now is None and old is None else f"{_fmt(old)} -> {_fmt(now)}"
    if now is None:
        return ""
    split = _value(result, scenario, stage, "pyspy")
    if stage == "total" or split is None or split == now:
        return f"{now:.2f}"
    return f"{now:.2f} ({split:.2f})"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_stages",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", nargs="?", help="output of bench.profile_record")
    parser.add_argument("--collapsed", nargs="*", default=[],
                        help="collapsed-stack files of one process tree (instead of a dir)")
    parser.add_argument("--jobs", type=int, default=0, help="jobs done while recording")
    parser.add_argument("--hz", type=float, default=100, help="py-spy --rate")
    parser.add_argument("--cpu-ms-per-job", type=float, default=None,
                        help="the process tree's CPU per job from /proc (else from samples)")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--compare", help="an earlier stages.json: before -> after table")
    parser.add_argument("--cpu-collapsed", action="store_true",
                        help="also write the CPU-only stacks rooted by stage (.cpu.txt), "
                             "e.g. for speedscope")
    parser.add_argument("--out", help="where to write the JSON (default: DIR/stages.json; "
                                      "stdout with --collapsed)")
    args = parser.parse_args(argv)
    if args.collapsed:
        if not args.jobs:
            parser.error("--collapsed needs --jobs")
        result = analyse(Profile.read(Path(p) for p in args.collapsed), args.jobs, args.hz,
                         args.cpu_ms_per_job, args.top)
        text = json.dumps(result, indent=1)
        if args.out:
            Path(args.out).write_text(text + "\n")
        else:
            print(text)
        return 0
    if not args.directory:
        parser.error("give a directory written by bench.profile_record, or --collapsed")
    directory = Path(args.directory)
    result = analyse_dir(directory, args.top, args.cpu_collapsed)
    if not result["scenarios"]:
        parser.error(f"no bench.profile_record results in {directory}")
    out = Path(args.out) if args.out else directory / "stages.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    before = json.loads(Path(args.compare).read_text()) if args.compare else None
    print(markdown(result, before))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
