"""The ``visionq`` command.

The core's own subcommands are the client's (``submit``, ``stream``, ``status``); every
other one comes from the role that owns it, found through the entry points of the group
``visionq.commands`` (pyproject.toml), as Flask (``flask.commands``) and Celery
(``celery.commands``) find theirs: ``up`` and ``watch`` (``launcher``), ``worker`` and
``install-models`` (``workers``), ``autoscale``, ``report`` (``monitoring``).  An entry
point's name is the subcommand's and its object a ``click.Command``; it is loaded only
when that subcommand runs (or ``--help`` lists them), so the core imports no role and
``visionq submit`` loads no worker or API code.
"""

from __future__ import annotations

import contextlib
import json
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import click
from visionq_client import Client, StreamClosedError, VisionqError, image_files

from visionq import __version__
from visionq.settings import DEFAULT_API_URL, QUEUES, ClientSettings

COMMANDS_GROUP = "visionq.commands"
"""The entry-point group of the roles' subcommands."""


def parse_queues(value: str, allowed: tuple[str, ...] = QUEUES) -> list[str]:
    """``--queues a,b``: the queue names, each one of ``allowed`` (else a usage error)."""
    queues = [q.strip() for q in value.split(",") if q.strip()]
    unknown = [q for q in queues if q not in allowed]
    if unknown:
        raise click.BadParameter(f"unknown queue(s) {', '.join(unknown)}; "
                                 f"choose from {', '.join(allowed)}")
    return queues


def role_commands() -> dict[str, EntryPoint]:
    """The installed entry points of ``visionq.commands``, by subcommand name."""
    return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}


def unavailable(name: str, exc: ImportError) -> click.Command:
    """Stands for a role's subcommand whose module cannot be imported (an extra not
    installed): ``--help`` still lists the others, and running it says why, status 1."""

    def run() -> None:
        click.echo(f"visionq {name}: unavailable here ({exc})", err=True)
        sys.exit(1)

    return click.Command(name, callback=run, short_help=f"(unavailable: {exc})",
                         context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True})


class RoleGroup(click.Group):
    """The core's subcommands plus the roles' (``visionq.commands`` entry points), each
    loaded when asked for.  A core subcommand wins over an entry point of the same name."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *role_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        entry_point = role_commands().get(cmd_name)
        if entry_point is None:
            return None
        try:
            loaded = entry_point.load()
        except ImportError as exc:
            return unavailable(cmd_name, exc)
        if not isinstance(loaded, click.Command):
            raise TypeError(f"entry point {entry_point.value} ({COMMANDS_GROUP}) is not a "
                            "click command")
        return loaded


@click.group(cls=RoleGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="visionq")
def main() -> None:
    """visionq: image inference (faces, objects, ImageNet labels) over REST."""


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


if __name__ == "__main__":
    main()
