"""``visionq report`` (entry point of ``visionq.commands``): the charts' own command line
(``monitoring.report``) under the ``visionq`` command."""

from __future__ import annotations

import sys

import click

from monitoring.report import main as report_main


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def report(argv: tuple[str, ...]) -> None:
    """PNG charts: latency, goodput, queues (see `visionq report --help`)."""
    sys.exit(report_main(list(argv)))
