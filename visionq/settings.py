"""Configuration: pydantic settings models, environment variables with the ``VISIONQ_``
prefix (``REDIS_URL`` also without it), defaults as named constants.

``Settings`` is the service's (API, workers, ``visionq up``, autoscaler), ``ClientSettings``
the command-line client's; monitoring has ``monitoring.settings.MonitoringSettings`` and
each model plugin its own (``workers.model.PluginSettings``, e.g. ``VISIONQ_FACE_*``).
Every field of all of them, with its description and default, is a row of the generated
``docs/configuration.md`` (``python docs/gen_config.py``; ``tests/visionq/test_settings_docs.py``
checks the page is up to date): a new field needs a ``description``.  A default computed at
run time states how the page words it in ``json_schema_extra={"default_text": ...}``.

Sharding by queue: ``VISIONQ_REDIS_URL_<QUEUE>`` (``_FACE``, ``_DETECT``, ``_CLASSIFY``,
``_CUSTOM``) puts one queue's Celery messages, job records and images on a Redis of its own
(``visionq.shards`` maps queues to URLs); an unset one means ``REDIS_URL``.  Variables with
that prefix naming no queue are ignored, with a warning (``visionq.shards.unknown_variables``).

Variables other tools define keep their own names and are read where those tools expect
them: ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, set by
``visionq up``), ``XDG_CACHE_HOME`` (the default of ``VISIONQ_MODELS_DIR``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from functools import cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from visionq.face_budget import DEFAULT_FACE_MAX_SCAN_PIXELS
from visionq.imaging import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from visionq.model_scan import DEFAULT_MODEL_MAX_BYTES
from visionq.options import FaceDetector

DEFAULT_BACKOFF_INITIAL_S = 1.0
"""``visionq up``'s supervisor (``launcher.supervisor``): first wait before a restart."""
DEFAULT_BACKOFF_MAX_S = 30.0
DEFAULT_GIVE_UP_AFTER = 5
"""Short runs within the window before a role is given up: at 1, 2, 4, 8 s of backoff the
fifth comes ~15 s plus five start-ups after the first, well inside the window."""
DEFAULT_WINDOW_S = 120.0
DEFAULT_REDIS_PORT = 6379
DEFAULT_REDIS_URL = f"redis://127.0.0.1:{DEFAULT_REDIS_PORT}/0"
DEFAULT_BLOB_TTL_S = 3600
"""An uploaded image lives at most an hour if its job never runs."""
DEFAULT_RESULT_TTL_S = 24 * 3600
"""Job records (status, result, timings) are kept for a day."""
DEFAULT_SOFT_TIME_LIMIT_S = 50
DEFAULT_HARD_TIME_LIMIT_S = 60
DEFAULT_VISIBILITY_TIMEOUT_S = 90
"""Must exceed the hard time limit (60 s): with prefetch 1 and late acks a message is
unacknowledged only while its task runs, so a running job is never redelivered; short
enough that the job of a worker that vanished (kill -9, lost node) comes back within
~1.5 minutes (kombu sweeps every 5 s) instead of Redis transport's default hour."""
DEFAULT_CLAIM_MAX = 4
"""Jobs per Celery delivery when the queue is deep (``workers.claim``): its own and 3
claimed."""
DEFAULT_MAX_TASKS_PER_CHILD = 1000
DEFAULT_MAX_MEMORY_PER_CHILD_KB = 2_000_000
"""A pool child is replaced (after its current job) past 1000 jobs or 2 GB RSS."""
QUEUES = ("face", "detect", "classify")
DEFAULT_MAX_BACKLOG = 1000
"""Queued messages per queue beyond which new jobs get 503 + Retry-After (backpressure):
at ~20 jobs/s per worker that is under a minute of work, so callers learn early."""
DEFAULT_SYNC_TIMEOUT_S = 30.0
"""How long a DeepStack-style synchronous endpoint waits for its job before a 504."""
DEFAULT_RECENT_JOBS = 10_000
"""Job ids kept in the recent-jobs index (``GET /v1/jobs``); older ones drop off."""
DEFAULT_FACE_TOLERANCE = 0.47
"""Largest encoding distance at which a face is named (face_recognition's own is 0.6): with
``DEFAULT_FACE_MIN_SIZE_PX``, the middle of the interval where ``python -m bench
face-openset`` names no stranger and every held-out photo of the enrolled people (docs/models.md,
"Face recognition threshold")."""
DEFAULT_FACE_MIN_SIZE_PX = 50
"""Faces less high than this are answered "unknown": most strangers named at 0.5-0.6 are
small faces (``python -m bench face-openset``).  50, not 60: YuNet's boxes (the default
detector) are ~10 % less high than HOG's, and at 60 one enrolled photo (obama-240p, 56 px
by YuNet, 62 by HOG) went unknown (90 % of held-out photos named); at 50 both detectors name
every held-out photo and no stranger at 0.47 (HOG's safe interval 0.41-0.54 as at 60)."""
DEFAULT_MODELS = {
    "face": "face_recognition",
    "detect": "centernet_mbv3",
    "classify": "efficientnet_lite0",
}
DEFAULT_WATCH_INTERVAL_S = 10.0
"""``visionq watch`` in scan mode lists the watched prefix this often."""
DEFAULT_WATCH_DEDUPE_TTL_S = 14 * 24 * 3600
"""An object version (bucket/key/ETag) is remembered this long: SQS keeps a message at most
14 days, so no redelivery can outlive its claim."""
DEFAULT_WATCH_METRICS_PORT = 9810
DEFAULT_WATCH_REREAD_BACKOFF_S = 30.0
DEFAULT_HISTORY_DAYS = 90
"""Job history rows older than this are deleted (by the retention pass)."""
DEFAULT_HISTORY_MAX_ROWS = 10_000_000
"""... and the oldest beyond this many: ~10 GB of SQLite at ~1 kB a row."""
DEFAULT_MAX_STREAMS = 12
"""Open ``/v1/stream`` connections per API process: under ``visionq up``'s 16 threads per
gunicorn worker, so 4 threads stay free for REST requests."""
DEFAULT_MAX_STREAMS_PER_KEY = 8
DEFAULT_STREAM_WINDOW = 8
"""Images in flight per stream: enough to keep a worker busy across the network round trip."""
DEFAULT_CALLBACK_RETRY_S = 6 * 3600.0
"""A receiver down for a few hours (a restart, a deploy gone wrong) still gets every result."""
DEFAULT_CALLBACK_TIMEOUT_S = 10.0
DEFAULT_CALLBACK_CONCURRENCY = 16
DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8000
DEFAULT_API_URL = f"http://{DEFAULT_API_HOST}:{DEFAULT_API_PORT}"


def default_models_dir() -> Path:
    """``$XDG_CACHE_HOME/visionq/models``, else ``~/.cache/visionq/models``: independent of
    the working directory, so every worker on the host finds what ``visionq install-models``
    put there."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "visionq" / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VISIONQ_", extra="ignore",
                                      populate_by_name=True)

    redis_url: str = Field(
        default=DEFAULT_REDIS_URL,
        validation_alias=AliasChoices("REDIS_URL", "VISIONQ_REDIS_URL"),
        description=(
            "Broker, job records and default blob store; `redis://:password@host:port/db` "
            "(tested), or TLS with `rediss://:password@host:6380/0?ssl_cert_reqs=required` "
            "(kombu insists on `ssl_cert_reqs`), or Redis Sentinel with "
            "`sentinel://host1:26379/0;sentinel://host2:26379/0` (tested with a failover, see "
            "\"Redis Sentinel\"). When unset, `visionq up` starts the embedded Redis on this "
            "address."),
    )
    redis_url_face: str | None = Field(
        default=None, description="Redis of the face queue: its Celery messages, job records "
        "and images (visionq.shards); unset: REDIS_URL.")
    redis_url_detect: str | None = Field(
        default=None, description="Redis of the detect queue (as redis_url_face).")
    redis_url_classify: str | None = Field(
        default=None, description="Redis of the classify queue (as redis_url_face).")
    redis_url_custom: str | None = Field(
        default=None, description="Redis of the custom queue (as redis_url_face).")
    redis_sentinel_master: str = Field(
        default="mymaster",
        description="Master name Redis Sentinel knows the primary by (sentinel:// URLs).")
    redis_min_replicas_ack: int | None = Field(
        default=None, ge=0,
        description="Replicas that must have a job's admission and result before they are "
        "acknowledged (Redis WAIT); default 1 with sentinel:// URLs, else 0.",
        json_schema_extra={"default_text": "1 with `sentinel://`, else 0"})
    redis_port: int = Field(default=DEFAULT_REDIS_PORT,
                            description="Port of the embedded Redis (when REDIS_URL is unset).")
    state_dir: Path = Field(default=Path(".visionq"),
                            description=(
            "Embedded Redis data (AOF, `appendfsync everysec`) and other state."))
    blob_url: str = Field(default="redis://",
                          description=(
            "Where uploads are stored: `redis://` (the broker, with a TTL) or "
            "`s3://bucket/prefix`."))
    s3_endpoint_url: str | None = Field(default=None,
                                        description=(
            "S3-compatible endpoint (MinIO, moto); AWS credentials come from the usual boto3 "
            "chain."))
    blob_ttl_s: int = Field(default=DEFAULT_BLOB_TTL_S, description=(
        "How long an unprocessed upload is kept."))
    result_ttl_s: int = Field(default=DEFAULT_RESULT_TTL_S, description=(
        "How long job records and results are kept."))
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, description="Largest upload (20 MiB).")
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, description="Largest image (50 MP).")
    soft_time_limit_s: int = Field(default=DEFAULT_SOFT_TIME_LIMIT_S, description=(
        "A job running longer fails with `timeout`."))
    hard_time_limit_s: int = Field(default=DEFAULT_HARD_TIME_LIMIT_S, description=(
        "The worker child is replaced after this long."))
    visibility_timeout_s: int = Field(default=DEFAULT_VISIBILITY_TIMEOUT_S, description=(
        "An unacknowledged job held by a vanished worker is redelivered after this long (must "
        "exceed the hard limit; checked at start)."))
    reaper_grace_s: float = Field(
        default=60.0, ge=0,
        description=(
            "A job still queued this long after the visibility timeout is re-published (its "
            "message was lost in delivery)."))
    worker_max_tasks_per_child: int = Field(
        default=DEFAULT_MAX_TASKS_PER_CHILD, description=(
            "A pool child is replaced (after its job) past this many Celery deliveries; one that "
            "has run this many jobs claims no more, so it runs fewer than twice as many jobs."))
    worker_max_memory_per_child_kb: int = Field(
        default=DEFAULT_MAX_MEMORY_PER_CHILD_KB, description=(
            "A pool child is replaced (after its job) past this resident memory, in KiB."))
    model_face: str = Field(default=DEFAULT_MODELS["face"], description=(
        "Registry name (or `module:Class`) of the model the face queue runs."))
    model_detect: str = Field(
        default=DEFAULT_MODELS["detect"],
        validation_alias=AliasChoices("VISIONQ_MODEL_DETECT", "VISIONQ_DETECT_MODEL"),
        description="The detect queue's model: a registry name, or `custom/<name>` for a "
        "detector from the custom models folder (workers.custom.detector).")
    model_classify: str = Field(default=DEFAULT_MODELS["classify"], description=(
        "Registry name (or `module:Class`) of the model the classify queue runs."))
    models_dir: Path = Field(
        default_factory=default_models_dir,
        description=(
            "Where `visionq install-models` puts converted weights (detect); "
            "`$XDG_CACHE_HOME/visionq/models` when `XDG_CACHE_HOME` is set; custom models live "
            "in its `custom/` folder."),
        json_schema_extra={"default_text": "`~/.cache/visionq/models`"})
    custom_models_loaded: int = Field(
        default=4, ge=1, description="Custom models a `custom` worker process keeps loaded "
        "(least recently used dropped).")
    model_max_bytes: int = Field(
        default=DEFAULT_MODEL_MAX_BYTES, ge=1, description=(
            "Largest custom model `addmodel` accepts: the file, or a SavedModel `.zip`'s "
            "uncompressed total (also at most 1000 entries), checked from the zip's directory "
            "before extracting and again while extracting; 413 `model_too_large` past it."))
    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="This worker host's id in the busy marks the autoscaler reads for "
        "scale-in protection (the EC2 instance id, set by autoscale/user-data.sh).",
        json_schema_extra={"default_text": "host name"})
    api_host: str = Field(default=DEFAULT_API_HOST, description=(
        "Address `visionq up` binds the API to."))
    api_port: int = Field(default=DEFAULT_API_PORT, description=(
        "Port `visionq up` binds the API to."))
    flower_port: int = Field(default=5555, description="Flower's port.")
    flower_basic_auth: str = Field(
        default="", description="Flower's basic auth, user:password (comma-separate several); "
        "when set, `visionq up` binds Flower to the API's host, else Flower stays on loopback.")
    max_wait_s: float = Field(default=60.0, description="Longest ?wait= long-poll the API honours.")
    api_keys: str = Field(default="", description="Comma-separated API keys; empty = no auth "
                          "(every caller is one tenant, and none is an admin).")
    admin_keys: str = Field(default="", description="Comma-separated admin keys (face backup/"
                            "restore, custom model add/delete, any caller's jobs); also valid "
                            "as API keys. Empty: no caller is an admin.")
    secret_key: str = Field(
        default="", repr=False,
        description="Server secret (16+ characters) keying the HMAC that names API keys in "
        "job records and history; empty: a random one kept in <state dir>/secret_key. Set "
        "the same on every API host.")
    allowed_hosts: str = Field(
        default="", description="Comma-separated extra Host names the API answers for "
        "(`name`, `.domain` with its subdomains, `*` any); IP addresses, localhost, "
        "single-label names and .local/.lan/.internal/.home.arpa/.svc names always are.")
    cors_origins: str = Field(
        default="", description="Comma-separated browser origins (`https://app.example.com`, "
        "`*` any) allowed to call the API and given CORS headers; other origins' requests "
        "are refused (403).")
    rate_limit: int = Field(default=0, ge=0, description="Requests per key per rate window; "
                            "0 = unlimited.")
    rate_window_s: int = Field(default=60, ge=1, description="Rate-limit window in seconds.")
    max_backlog_face: int = Field(default=DEFAULT_MAX_BACKLOG, description=(
        "Length of the face queue beyond which new jobs get 503 `queue_full`."))
    max_backlog_detect: int = Field(default=DEFAULT_MAX_BACKLOG, description=(
        "Length of the detect queue beyond which new jobs get 503 `queue_full`."))
    max_backlog_classify: int = Field(default=DEFAULT_MAX_BACKLOG, description=(
        "Length of the classify queue beyond which new jobs get 503 `queue_full`."))
    max_backlog_custom: int = Field(default=DEFAULT_MAX_BACKLOG, description=(
        "Length of the custom queue beyond which new jobs get 503 `queue_full`."))
    max_batch: int = Field(default=64, ge=1, description="Images per batch submit.")
    max_streams: int = Field(
        default=DEFAULT_MAX_STREAMS, ge=0,
        description="WebSocket streams (`/v1/stream`) open at once per API process (0: "
        "streaming off). Each holds one gunicorn thread: keep it below the threads per "
        "process (`visionq up`: 16) so REST is still served.")
    max_streams_per_key: int = Field(default=DEFAULT_MAX_STREAMS_PER_KEY, ge=1,
                                     description="Streams open at once per API key (per "
                                     "client address when the API is open), per API process.")
    stream_window: int = Field(default=DEFAULT_STREAM_WINDOW, ge=1, le=1024,
                               description="Credits per stream: images in flight per "
                               "connection.")
    stream_idle_timeout_s: float = Field(default=60.0, gt=0,
                                         description="A stream with no frame received and no "
                                         "job pending this long is closed (code 4408).")
    stream_max_frame_bytes: int = Field(default=0, ge=0,
                                        description="Largest WebSocket frame a stream accepts "
                                        "(close code 1009 beyond); 0: VISIONQ_MAX_BYTES + 64 KiB.")
    stream_auth_timeout_s: float = Field(
        default=5.0, gt=0, description="A stream upgraded without a key in its headers must "
        "send its {\"auth\": key} frame within this many seconds, else it is closed (code "
        "4401); until then it holds one of VISIONQ_MAX_STREAMS (such connections: at most "
        "half of them).")
    stream_send_timeout_s: float = Field(
        default=10.0, gt=0, description="A frame the client does not take within this many "
        "seconds (it stopped reading) ends the stream, freeing its thread.")
    sync_timeout_s: float = Field(default=DEFAULT_SYNC_TIMEOUT_S, description=(
        "How long DeepStack endpoints wait for the job."))
    deepstack_max_predictions: int = Field(
        default=300, ge=1, le=1000, description="/v1/vision/detection answers at most this "
        "many predictions (the most confident): DeepStack's own cap (max_det 300 in its NMS). "
        "Frigate reads at most 20 (more raise IndexError in its deepstack detector): set 20 "
        "for Frigate.")
    idempotency_ttl_s: int = Field(default=24 * 3600, description="How long an Idempotency-Key "
                                   "maps to its job(s).")
    recent_jobs: int = Field(default=DEFAULT_RECENT_JOBS, description=(
        "How many job ids `GET /v1/jobs` can list from Redis (older ones come from the history)."))
    face_detector: FaceDetector = Field(
        default="yunet", description=(
            "Face: the detector of face jobs that do not choose one (`face_detector` option): "
            "`yunet` (OpenCV Zoo's YuNet on ONNX Runtime, weights from `visionq "
            "install-models`; 3-4x less CPU than HOG with the same or better recall, `python "
            "-m bench faces`), `hog` (dlib's, face_recognition's own boxes) or `cnn` (cost and "
            "recall per detector)."))
    face_tolerance: float = Field(default=DEFAULT_FACE_TOLERANCE, description=(
        "Face recognition distance threshold: a face matches a registered person at or below it "
        "(`face_recognition`'s own is 0.6; lower: fewer strangers named, more \"unknown\" for "
        "registered people; open-set evaluation)."))
    face_min_margin: float = Field(
        default=0.0, ge=0, le=1, description="Recognition: the second-nearest registered "
        "person must be at least this much farther than the nearest, else \"unknown\" "
        "(0: off; `python -m bench face-openset`).")
    face_min_size_px: int = Field(
        default=DEFAULT_FACE_MIN_SIZE_PX, ge=0, le=10_000, description=(
            "Recognition: faces less high than this (original px, `quality.size_px`) are "
            "answered \"unknown\" (`0`: off; small faces are most of the strangers named, open-set "
            "evaluation)."))
    face_min_sharpness: float = Field(
        default=0.0, ge=0, description="Recognition: faces whose `quality.sharpness` "
        "(variance of the Laplacian at 64 px) is below this are answered \"unknown\" (0: off).")
    face_max_scan_pixels: int = Field(
        default=DEFAULT_FACE_MAX_SCAN_PIXELS, ge=1_000_000,
        description=(
            "Face: most pixels a job's `upsample` / `min_face_px` may make the detector scan "
            "(pixels × 4^upsample, or pixels × (80 / `min_face_px`)²; × 64 with the CNN; YuNet: "
            "pixels × 4^upsample or × (32 / `min_face_px`)², × 4); more is refused at submit "
            "(400 `face_cost_too_high`) and failed by the worker without detecting. 40 MP ≈ 4 "
            "CPU-s and 0.5 GB of HOG, or 0.625 MP of CNN ≈ 3.5 CPU-s and 0.8 GB, on this machine "
            "(`visionq/face_budget.py`). It also caps the CNN's default scale (at most budget / "
            "64 pixels scanned)."))
    claim_max: int = Field(
        default=DEFAULT_CLAIM_MAX, ge=1, le=64,
        description="Jobs a worker process may run per Celery delivery when its queue is "
        "deep: its own plus up to N-1 more, each claimed by the previous job's finishing "
        "round trip (saves Celery's per-message work; 1: off).")
    latency_queues: str = Field(
        default="detect", description="Comma-separated latency-critical queues: workers of "
        "every other queue run at `VISIONQ_HEAVY_NICE`; empty: no latency classes.")
    heavy_nice: int = Field(
        default=10, ge=0, le=19, description="Nice value of the workers of queues that are not "
        "latency-critical (0: the default priority).")
    task_events: bool = Field(
        default=False, description="Workers publish Celery task events from the start (Flower "
        "turns them on by itself when it runs; off saves several Redis publishes per job).")
    watch_interval_s: float = Field(default=DEFAULT_WATCH_INTERVAL_S, gt=0,
                                    description=(
            "`visionq watch` scan mode: seconds between listings of the watched prefix "
            "(`--interval` overrides)."))
    watch_dedupe_ttl_s: int = Field(default=DEFAULT_WATCH_DEDUPE_TTL_S, ge=60,
                                    description="`visionq watch`: how long an object version "
                                    "(bucket/key/ETag) is remembered as handled.")
    watch_metrics_port: int = Field(default=DEFAULT_WATCH_METRICS_PORT, ge=0,
                                    description=(
            "`visionq watch`: Prometheus metrics port (`0`: none; `--metrics-port` overrides)."))
    watch_reread_backoff_s: float = Field(
        default=DEFAULT_WATCH_REREAD_BACKOFF_S, gt=0,
        description="`visionq watch`: seconds before a new job for an object whose worker "
        "could not read it (S3 unreachable or throttling after its retries), doubled for "
        "each of the 3 new jobs before the error is written as the result.")
    history_url: str = Field(
        default="", description="Durable job history (SQLAlchemy URL, e.g. postgresql://user:"
        "pass@host/db); empty: SQLite at <state dir>/history.sqlite3.")
    history_days: int = Field(default=DEFAULT_HISTORY_DAYS, ge=0,
                              description="History rows older than this many days are "
                              "deleted (0: no age limit).")
    history_max_rows: int = Field(default=DEFAULT_HISTORY_MAX_ROWS, ge=0,
                                  description="The oldest history rows beyond this many are "
                                  "deleted (0: no limit).")
    supervisor_backoff_initial_s: float = Field(
        default=DEFAULT_BACKOFF_INITIAL_S, ge=0,
        description="`visionq up`: wait before restarting a role that exited; doubles for each "
        "further exit soon after a start.")
    supervisor_backoff_max_s: float = Field(default=DEFAULT_BACKOFF_MAX_S, ge=0,
                                            description="`visionq up`: longest restart backoff.")
    supervisor_give_up_after: int = Field(
        default=DEFAULT_GIVE_UP_AFTER, ge=1,
        description="`visionq up`: a role that exits this many times within "
        "VISIONQ_SUPERVISOR_WINDOW_S, each soon after its start, is given up.")
    supervisor_window_s: float = Field(default=DEFAULT_WINDOW_S, gt=0,
                                       description="`visionq up`: the give-up window.")
    liveness_timeout_s: float = Field(
        default=30.0, ge=0,
        description="`visionq up`: a child that does not answer its liveness check (Redis "
        "PING, the API's /healthz, a worker's heartbeat; at least 10 s for a worker, which "
        "beats every 5 s) for this many seconds is killed and restarted like a crashed one "
        "(0: off).")
    history_writer: bool = Field(default=True,
                                 description=(
            "The API process drains finished jobs from Redis into the history (and applies "
            "retention); `false` in API processes that should only read it."))
    callback_url: str = Field(
        default="", description="Webhook receiving every finished job (as a job's "
        "callback_url does, signed with the global secret); empty: none.")
    callback_allow: str = Field(
        default="", description="Comma-separated addresses, networks (CIDR) and host names "
        "webhooks may go to besides public addresses; loopback, link-local, private and "
        "other non-global addresses are refused otherwise (at submit and after DNS at "
        "delivery).")
    callback_secret: str = Field(
        default="", repr=False,
        description="Key of the webhook signatures (16+ characters): the global secret, and "
        "the base each API key's secret is derived from; empty: derived from the server "
        "secret (VISIONQ_SECRET_KEY).")
    callback_retry_s: float = Field(
        default=DEFAULT_CALLBACK_RETRY_S, gt=0,
        description="How long a webhook is retried (back-off doubling from 1 s to 5 min) "
        "before it is given up.")
    callback_timeout_s: float = Field(
        default=DEFAULT_CALLBACK_TIMEOUT_S, gt=0, le=60,
        description="Time limit of one webhook attempt (connect, send, status line).")
    callback_concurrency: int = Field(
        default=DEFAULT_CALLBACK_CONCURRENCY, ge=1, le=256,
        description="Webhook attempts in flight at once per `visionq callbacks` process.")

    @property
    def history_store_url(self) -> str:
        """``history_url``, or the default SQLite file under the state directory."""
        if self.history_url:
            return self.history_url
        return f"sqlite:///{(Path(self.state_dir) / 'history.sqlite3').resolve()}"

    @property
    def api_key_list(self) -> list[str]:
        return _split(self.api_keys)

    @property
    def admin_key_list(self) -> list[str]:
        return _split(self.admin_keys)

    @property
    def allowed_host_list(self) -> list[str]:
        return _split(self.allowed_hosts)

    @property
    def cors_origin_list(self) -> list[str]:
        return _split(self.cors_origins)

    def max_backlog_for(self, task: str) -> int:
        return {"face": self.max_backlog_face, "detect": self.max_backlog_detect,
                "classify": self.max_backlog_classify, "custom": self.max_backlog_custom}[task]

    @field_validator("flower_basic_auth")
    @classmethod
    def _user_colon_password(cls, value: str) -> str:
        if any(":" not in pair or pair.startswith(":") for pair in _split(value)):
            raise ValueError("VISIONQ_FLOWER_BASIC_AUTH must be user:password "
                             "(comma-separated for several users)")
        return value.strip()

    @model_validator(mode="after")
    def _limits_in_order(self) -> Settings:
        if not self.soft_time_limit_s < self.hard_time_limit_s < self.visibility_timeout_s:
            raise ValueError(
                "time limits must satisfy VISIONQ_SOFT_TIME_LIMIT_S < VISIONQ_HARD_TIME_LIMIT_S"
                f" < VISIONQ_VISIBILITY_TIMEOUT_S (got {self.soft_time_limit_s} < "
                f"{self.hard_time_limit_s} < {self.visibility_timeout_s}): a running job must "
                "never be redelivered while it runs")
        return self

    def model_for(self, task: str) -> str:
        return {"face": self.model_face, "detect": self.model_detect,
                "classify": self.model_classify}[task]


class ClientSettings(BaseSettings):
    """The command-line client's (``visionq submit``/``status``): where the API is and
    which key to send.  Kept apart from ``Settings``: a client machine has no Redis."""

    model_config = SettingsConfigDict(env_prefix="VISIONQ_", extra="ignore")

    url: str = Field(default=DEFAULT_API_URL, description="API base URL.")
    api_key: str | None = Field(default=None, description="API key sent with every request.")


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (an address to bind, not a ``Host`` header)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@cache
def get_settings() -> Settings:
    return Settings()
