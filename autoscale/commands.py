"""``visionq autoscale`` (entry point of ``visionq.commands``): the autoscaler's own
command line (``autoscale.loop``) under the ``visionq`` command."""

from __future__ import annotations

import sys

import click

from autoscale.loop import main as autoscale_main


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def autoscale(argv: tuple[str, ...]) -> None:
    """Run the autoscaler (see `visionq autoscale --help`)."""
    sys.exit(autoscale_main(list(argv)))
