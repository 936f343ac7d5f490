"""How one job ends, as one value: ``Finish`` is everything the job's finishing round trip
writes and carries, built once at the end of ``workers.runner.run_job`` and sent once by
``apply``, which says what came back (``Finished``).

What a finish carries besides the record (``JobStore.succeed``/``fail``): the scaling
hints (busy mark cleared, service time: ``workers.stores.QueueStores.done``) and what the
delivery adds (``Rides``): the ack of a claimed job and the claim of the next one
(``workers.claim``).  A job that does not run (a duplicate, an expired record) has no
finish; what rode on it is sent alone (``let_go``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from visionq.broker import Command, send
from visionq.jobs import ClaimRequest, JobStore
from workers.claim import Claimed


@dataclass(frozen=True)
class Rides:
    """What the delivery adds to a job's finish (``workers.claim``): ``ack`` acknowledges
    the claimed message the job came in (on the delivery's last job it also ends the host's
    busy mark), ``claim`` claims the next of the queue's jobs for the delivery."""

    ack: tuple[Command, ...] = ()
    claim: ClaimRequest | None = None

    @property
    def claimed(self) -> bool:
        """The job came by a claim (it has an ack to carry): its delivery's soft time limit
        is not its own."""
        return bool(self.ack)


NO_RIDES = Rides()
"""A delivered job's finish when its delivery claims nothing: nothing rides along."""


@dataclass(frozen=True)
class Verdict:
    """What running the job came to: a ``result``, or a failure ``code`` and ``error``."""

    result: Any = field(default=None, repr=False)
    code: str | None = None
    error: str = ""

    @property
    def outcome(self) -> str:
        return "succeeded" if self.code is None else "failed"


@dataclass(frozen=True)
class Finish:
    """One job's finishing round trip: its ``verdict``; ``blob``, the Redis image the
    finishing script deletes (``None``: none owned there); ``hints``, the scaling hints;
    ``rides``, what the delivery adds."""

    job_id: str
    verdict: Verdict
    blob: str | None = None
    hints: tuple[Command, ...] = ()
    rides: Rides = NO_RIDES


@dataclass(frozen=True)
class Finished:
    """What ``apply`` got back: ``recorded`` (``False``: another delivery finished the job
    first, the first finish wins) and the jobs ``claimed`` for this delivery."""

    recorded: bool
    claimed: tuple[Claimed, ...] = ()


def apply(jobs: JobStore, finish: Finish) -> Finished:
    """Send ``finish`` in one round trip (the record, its hints, ack and claim)."""
    verdict, rides = finish.verdict, finish.rides
    recorded, claimed = jobs.finish(finish.job_id, result=verdict.result, code=verdict.code,
                                    error=verdict.error, blob=finish.blob,
                                    also=(*finish.hints, *rides.ack), claim=rides.claim)
    return Finished(recorded, tuple(Claimed(tag, job_id) for tag, job_id in claimed))


def let_go(jobs: JobStore, rides: Rides) -> None:
    """For a job that does not run: send its ack alone and end the delivery's claiming
    (the host's busy mark), which no finish will carry."""
    commands = [*rides.ack, *(rides.claim.end_commands() if rides.claim else ())]
    if commands:
        send(jobs.client, commands)
