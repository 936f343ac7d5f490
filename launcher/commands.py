"""``visionq up`` (entry point ``up`` of ``visionq.commands``): every role on this machine."""

from __future__ import annotations

import sys

import click

from launcher.up import bind_refusal, make_stack
from visionq.cli import parse_queues
from visionq.settings import QUEUES, Settings


@click.command()
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
                   "job; set VISIONQ_API_KEYS and VISIONQ_ADMIN_KEYS (docs/security.md)",
                   err=True)
    stack = make_stack(settings, parse_queues(queues), api_workers=api_workers,
                       worker_concurrency=concurrency, flower=not no_flower,
                       prometheus=not no_prometheus)
    sys.exit(stack.run())
