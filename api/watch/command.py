"""``visionq watch`` (entry point ``watch`` of ``visionq.commands``): the S3 watcher
(``api.watch.watcher``) wired to the tasks' ``enqueue`` and monitoring's ``WatchMetrics``,
as the API wires its routes to them."""

from __future__ import annotations

import json
import logging
import signal

import boto3
import click
from prometheus_client import CollectorRegistry, start_http_server
from pydantic import ValidationError

from api.watch.config import WatchConfig
from api.watch.watcher import Watcher
from monitoring.metrics import WatchMetrics
from tasks.app import make_celery
from tasks.signatures import enqueue
from visionq.callbacks.destinations import AllowList, DestinationError, check_url
from visionq.jobs import JobStore
from visionq.options import TASK_OPTIONS
from visionq.redis_conn import redis_client
from visionq.s3events import parse_s3_url, results_location
from visionq.settings import QUEUES, Settings
from visionq.shards import shard_map


@click.command()
@click.argument("source", metavar="s3://BUCKET/PREFIX")
@click.option("--task", "-t", type=click.Choice(QUEUES), required=True,
              help="The job each new object becomes.")
@click.option("--results", default=None, metavar="s3://BUCKET/PREFIX",
              help="Where result JSON files go (default: <prefix>-results/ in the same "
              "bucket); never inside the watched prefix.")
@click.option("--sqs-url", default=None,
              help="Event mode: the SQS queue receiving the bucket's s3:ObjectCreated:* "
              "notifications. Without it: scan mode (the prefix is listed periodically).")
@click.option("--interval", type=float, default=None,
              help="Scan mode: seconds between listings (default VISIONQ_WATCH_INTERVAL_S, 10).")
@click.option("--options", default=None, help='Task options as JSON, e.g. \'{"top_k": 3}\'.')
@click.option("--metrics-port", type=int, default=None,
              help="Prometheus metrics port (default VISIONQ_WATCH_METRICS_PORT, 9810; 0: none).")
@click.option("--once", is_flag=True,
              help="Handle the objects there now (scan) or queued now (event), wait for their "
              "results, exit.")
@click.option("--callback-url", default=None,
              help="A signed webhook for every job (docs/webhooks.md; sent by the "
              "callbacks role, checked against VISIONQ_CALLBACK_ALLOW).")
def watch(source: str, task: str, results: str | None, sqs_url: str | None,
          interval: float | None, options: str | None, metrics_port: int | None,
          once: bool, callback_url: str | None) -> None:
    """Turn every new object under s3://BUCKET/PREFIX into a TASK job and write its result
    (or error) as JSON under the results prefix: <results prefix><key>.json.

    Needs REDIS_URL (the broker the workers use) and AWS credentials (the usual boto3
    chain; VISIONQ_S3_ENDPOINT_URL for an S3-compatible store).  Workers read the objects in
    place, so they need s3:GetObject on the watched bucket.  Stop with Ctrl-C or SIGTERM;
    a restart resumes where the last run stopped."""
    settings = Settings()
    try:
        bucket, prefix = parse_s3_url(source)
        results_bucket, results_prefix = results_location(bucket, prefix, results)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    try:
        raw_options = json.loads(options) if options else {}
        parsed = TASK_OPTIONS[task].model_validate(raw_options)
    except (json.JSONDecodeError, ValidationError) as exc:
        raise click.BadParameter(f"--options: {exc}") from exc
    if callback_url is not None:
        try:
            check_url(callback_url, AllowList.parse(settings.callback_allow))
        except DestinationError as exc:
            raise click.BadParameter(f"--callback-url: {exc.message}") from exc
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s visionq watch %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    config = WatchConfig(
        bucket=bucket, prefix=prefix, task=task, results_bucket=results_bucket,
        results_prefix=results_prefix, options=parsed.model_dump(mode="json", exclude_unset=True),
        sqs_url=sqs_url, interval_s=interval or settings.watch_interval_s,
        dedupe_ttl_s=settings.watch_dedupe_ttl_s, max_bytes=settings.max_bytes,
        backlog_limit=settings.max_backlog_for(task), blob_ttl_s=settings.blob_ttl_s,
        reread_backoff_s=settings.watch_reread_backoff_s, callback_url=callback_url)
    port = settings.watch_metrics_port if metrics_port is None else metrics_port
    metrics = WatchMetrics(CollectorRegistry())
    if port:
        start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    client = redis_client(settings.redis_url)
    celery = make_celery(settings)
    jobs_client = redis_client(shard_map(settings).url_for(task))  # the task's queue's Redis
    watcher = Watcher(
        config, client, JobStore(jobs_client, settings.result_ttl_s, settings.recent_jobs),
        boto3.client("s3", endpoint_url=settings.s3_endpoint_url),
        lambda queue, job_id: enqueue(celery, queue, job_id), metrics,
        sqs=boto3.client("sqs", endpoint_url=settings.s3_endpoint_url) if sqs_url else None)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: watcher.stop())
    watcher.run(once=once)
