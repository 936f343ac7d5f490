"""``run_job`` reads top to bottom: it fits on a screen, takes what rides on its finish as one
value (no keyword flags), and its finish is one frozen value returned by the store's call,
not a list filled in place."""

from __future__ import annotations

import dataclasses
import inspect

from visionq.jobs import JobStore
from workers.finish import Finish, Finished, Rides, Verdict
from workers.runner import run_job

SCREEN_LINES = 50


def test_run_job_fits_on_a_screen() -> None:
    lines = inspect.getsource(run_job).splitlines()
    assert len(lines) <= SCREEN_LINES, f"run_job is {len(lines)} lines"
    assert "def " not in "\n".join(lines[1:])  # no nested closures


def test_what_rides_on_the_finish_is_one_value() -> None:
    parameters = inspect.signature(run_job).parameters
    assert not {"also", "claim", "ack", "claimed"} & set(parameters)
    assert parameters["rides"].default == Rides()
    for value in (Rides, Verdict, Finish, Finished):
        assert dataclasses.is_dataclass(value) and value.__dataclass_params__.frozen


def test_the_store_returns_what_a_finish_claimed() -> None:
    for method in (JobStore.succeed, JobStore.fail, JobStore.finish):
        parameters = inspect.signature(method).parameters
        assert "claimed" not in parameters  # no list passed in to be filled
