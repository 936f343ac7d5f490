"""``WatchConfig``: what one watcher watches (bucket, prefix, task, where results go) and
its bounds; its ``id`` names the watcher's state in Redis."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from visionq.s3events import watch_id


@dataclass(frozen=True)
class WatchConfig:
    bucket: str
    prefix: str
    task: str
    results_bucket: str
    results_prefix: str
    options: dict[str, Any] = field(default_factory=dict)
    sqs_url: str | None = None
    interval_s: float = 10.0
    dedupe_ttl_s: int = 14 * 24 * 3600
    max_bytes: int = 20 * 1024 * 1024
    backlog_limit: int = 1000
    blob_ttl_s: int = 3600
    reread_backoff_s: float = 30.0
    """Wait before a new job for an object its worker could not read (S3 away); doubled
    for each further one."""
    callback_url: str | None = None
    """A webhook for every job (``visionq.callbacks``; checked by ``visionq watch``)."""

    @property
    def id(self) -> str:
        return watch_id(self.bucket, self.prefix, self.task, self.results_bucket,
                        self.results_prefix)

    @property
    def mode(self) -> str:
        return "event" if self.sqs_url else "scan"
