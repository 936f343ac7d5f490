"""Every metric visionq emits, declared once, on a registry that is passed in.

Production code uses the process-wide ``metrics()``; tests build ``Metrics(CollectorRegistry())``
and read values with ``registry.get_sample_value``.  Where a metric means the same as one of
celery-exporter's (``celery_task_runtime``, ``celery_queue_length``...), it has the same name
and labels, so dashboards written for celery-exporter work on visionq unchanged.

Multiprocess: gunicorn workers and Celery prefork children each write their samples to
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode); whoever serves
``/metrics`` merges the files (``exposition_registry``).  The API and the workers use two
different directories so that no sample is exported twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds.  5 ms resolves a queue wait when workers are idle and an HTTP submit; 60 s is
the hard time limit, beyond which nothing finishes.  1 s and 2 s sit on the default SLOs so
``histogram_quantile`` is exact where goodput is decided.  13 buckets x 3 stages x 3 tasks
keeps the series count small."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
"""Images per ``predict`` call: powers of two up to the largest batch a CPU model takes."""
MODEL_LOAD_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)

STAGES = ("queue_wait", "inference", "end_to_end")
OUTCOMES = ("succeeded", "failed", "revoked")

REASONS = ("none", "bad_image", "too_large", "timeout", "model_error", "worker_lost",
           "expired", "internal", "other")
"""The ``reason`` label of completed jobs: a small fixed set so that a new error code can
never explode the series count; ``reason_for`` maps job failure codes onto it."""
_REASON_BY_CODE = {
    None: "none",
    "bad_image": "bad_image",
    "empty_image": "bad_image",
    "not_an_image": "bad_image",
    "truncated_image": "bad_image",
    "unsupported_format": "bad_image",
    "image_too_large": "too_large",
    "payload_too_large": "too_large",
    "timeout": "timeout",
    "inference_error": "model_error",
    "unsafe_model": "model_error",
    "model_too_large": "model_error",
    "face_cost_too_high": "too_large",
    "poison_job": "worker_lost",
    "image_expired": "expired",
    "internal": "internal",
}

# Names of the series computed at scrape time by ``monitoring.collector`` (not stored in a
# registry, so declared here as names for the dashboard, alerts and tests).
QUEUE_LENGTH = "celery_queue_length"  # celery-exporter's name and label (queue_name)
ACTIVE_WORKERS = "celery_active_worker_count"  # celery-exporter's name and label
QUEUE_IN_FLIGHT = "visionq_queue_in_flight"
QUEUE_OLDEST_AGE = "visionq_queue_oldest_age_seconds"
SLO_SECONDS = "visionq_slo_seconds"
REDIS_UP = "visionq_redis_up"
HISTORY_DEAD_LETTER_LENGTH = "visionq_history_dead_letter_length"
"""Length of the history's dead-letter list (``visionq.history.DEAD_LETTER_KEY``)."""
WEBHOOKS_PENDING = "visionq_webhooks_pending"
"""Webhook deliveries not yet delivered nor given up (``visionq.callbacks.sender``)."""
WEBHOOKS_OVERDUE = "visionq_webhooks_overdue_seconds"
"""How far behind its schedule the webhook sender is: now minus the earliest due time (0
when nothing is due): grows while no sender runs or all its attempts are busy."""

# Published by the autoscaler (``autoscaler_metrics``), read by the dashboard.
AUTOSCALE_DESIRED = "visionq_autoscale_workers_desired"
AUTOSCALE_CURRENT = "visionq_autoscale_workers_current"


def reason_for(code: str | None) -> str:
    """The ``reason`` label for a job failure ``code`` (``None`` for a success)."""
    return _REASON_BY_CODE.get(code, "other")


@dataclass
class Metrics:
    """All metrics of one process, registered on ``registry``."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        task_labels = ["name", "hostname", "queue_name"]
        # -- Celery tasks (worker side), celery-exporter names and labels ---------------
        self.task_started = Counter("celery_task_started", "Tasks started by a worker.",
                                    task_labels, registry=r)
        self.task_succeeded = Counter("celery_task_succeeded",
                                      "Tasks that returned without raising.", task_labels,
                                      registry=r)
        self.task_failed = Counter("celery_task_failed", "Tasks that raised.",
                                   [*task_labels, "exception"], registry=r)
        self.task_revoked = Counter("celery_task_revoked", "Tasks revoked before running.",
                                    task_labels, registry=r)
        self.task_runtime = Histogram("celery_task_runtime", "Task runtime in seconds.",
                                      task_labels, buckets=LATENCY_BUCKETS, registry=r)
        self.worker_tasks_active = Gauge(
            "celery_worker_tasks_active", "Tasks a worker is running now.", ["hostname"],
            registry=r, multiprocess_mode="livesum")
        # -- jobs (visionq's unit of work: one image, one task) ------------------------
        self.jobs_submitted = Counter("visionq_jobs_submitted",
                                      "Jobs accepted by the API (202).", ["task"], registry=r)
        self.jobs_completed = Counter(
            "visionq_jobs_completed", "Jobs that reached a final state, by outcome and reason.",
            ["task", "outcome", "reason"], registry=r)
        self.jobs_within_slo = Counter(
            "visionq_jobs_within_slo",
            "Goodput: jobs that succeeded within their task's end-to-end SLO.", ["task"],
            registry=r)
        self.job_latency = Histogram(
            "visionq_job_latency_seconds",
            "Job latency by stage: queue_wait (queued->started), inference (started->"
            "finished: fetch, decode, predict), end_to_end (queued->finished).",
            ["task", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("visionq_batch_size", "Images per model predict call.",
                                    ["task"], buckets=BATCH_BUCKETS, registry=r)
        self.model_load = Histogram(
            "visionq_model_load_seconds", "Time to load and warm up a model in a process.",
            ["task", "model"], buckets=MODEL_LOAD_BUCKETS, registry=r)
        self.history_dead_letters = Counter(
            "visionq_history_dead_letters",
            "Job history rows the store refused (e.g. a value longer than its column), set "
            "aside in the dead-letter list instead of blocking the history stream.",
            registry=r)
        # -- HTTP API ------------------------------------------------------------------
        self.http_requests = Counter(
            "visionq_http_requests", "API requests by route (the URL rule) and status.",
            ["method", "route", "status"], registry=r)
        self.http_latency = Histogram(
            "visionq_http_request_duration_seconds", "API request latency by route.",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)


@dataclass
class AutoscalerMetrics:
    """What the autoscaler publishes: its decision beside what it observed running."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        self.desired = Gauge(AUTOSCALE_DESIRED, "Workers the autoscaler wants per queue.",
                             ["queue_name"], registry=self.registry)
        self.current = Gauge(AUTOSCALE_CURRENT, "Workers running per queue, as the "
                             "autoscaler's backend reports them.", ["queue_name"],
                             registry=self.registry)


WATCH_LAG_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                     3600.0)
"""Seconds from an upload to its result file: a second or two when workers keep up, up to
an hour when a large bucket is processed (or the watcher was down) and objects queue."""


@dataclass
class WatchMetrics:
    """What ``visionq watch`` publishes (its own process, its own port)."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.objects_seen = Counter("visionq_watch_objects_seen",
                                    "Object notifications or listings seen, duplicates included.",
                                    ["mode"], registry=r)
        self.jobs_created = Counter("visionq_watch_jobs_created",
                                    "Jobs created for objects.", ["task"], registry=r)
        self.duplicates = Counter("visionq_watch_duplicates_skipped",
                                  "Objects (bucket/key/ETag) already handled: not a new job.",
                                  registry=r)
        self.skipped = Counter("visionq_watch_skipped",
                               "Records or objects not processed, by reason (test_event, "
                               "not_created, outside_prefix, superseded, malformed...).",
                               ["reason"], registry=r)
        self.results_written = Counter("visionq_watch_results_written",
                                       "Result JSON files written, by job status.",
                                       ["status"], registry=r)
        self.lag = Histogram("visionq_watch_lag_seconds",
                             "Seconds from an object's upload to its result file.",
                             buckets=WATCH_LAG_BUCKETS, registry=r)
        self.pending = Gauge("visionq_watch_pending",
                             "Objects whose job is created and whose result is not written.",
                             registry=r)


_process_metrics: Metrics | None = None


def metrics() -> Metrics:
    """This process's metrics (created on first use, after any fork that matters)."""
    global _process_metrics
    if _process_metrics is None:
        directory = multiprocess_dir()
        if directory:
            os.makedirs(directory, exist_ok=True)
        _process_metrics = Metrics(CollectorRegistry(auto_describe=True))
    return _process_metrics


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition_registry(own: CollectorRegistry | None = None,
                        directory: str | None = None) -> CollectorRegistry:
    """The registry to serve: the merged files of every process in multiprocess mode,
    else this process's own registry."""
    directory = directory or multiprocess_dir()
    if directory:
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=directory)
        return merged
    return own if own is not None else metrics().registry


def clean_multiprocess_dir(directory: str | os.PathLike[str]) -> None:
    """Empty (or create) a multiprocess directory; call before the processes start, or
    counters would resume from a previous run's dead processes."""
    os.makedirs(directory, exist_ok=True)
    for entry in os.scandir(directory):
        if entry.is_file() and entry.name.endswith(".db"):
            os.unlink(entry.path)
