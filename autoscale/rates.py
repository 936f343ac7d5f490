"""Arrival-rate estimate per queue from successive broker snapshots (pure, clock passed in).

Nothing in Redis counts arrivals, but conservation does: what arrived between two
polls is what is now waiting or in flight, minus what was before, plus what completed
(``visionq:autoscale:done:<queue>``). Smoothed with an exponentially weighted moving
average so one burst moves the estimate but does not own it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Half-life of the moving average: one minute tracks a daily curve and a burst while
#: ignoring a single odd poll.
DEFAULT_HALF_LIFE_SECONDS = 60.0
#: After this long with no arrival at all the rate is 0, not the average's long tail: a
#: moving average only halves every half-life, so a burst of 2/s would otherwise keep a
#: fraction of a worker "needed" — one worker running — for twenty minutes.
DEFAULT_QUIET_SECONDS = 120.0


@dataclass
class _Last:
    time: float
    depth: int
    done: int
    rate: float | None = None
    quiet_since: float | None = None
    """Start of the current run of samples without arrivals."""


@dataclass
class ArrivalRates:
    half_life: float = DEFAULT_HALF_LIFE_SECONDS
    quiet_seconds: float = DEFAULT_QUIET_SECONDS
    _last: dict[str, _Last] = field(default_factory=dict)

    def update(self, queue: str, now: float, depth: int, done: int) -> float:
        """Feed one sample (``depth`` = backlog + in-flight); returns the rate (msg/s)."""
        last = self._last.get(queue)
        if last is None or now <= last.time:
            self._last[queue] = _Last(now, depth, done, last.rate if last else None)
            return (last.rate if last else None) or 0.0
        dt = now - last.time
        finished = done - last.done if done >= last.done else 0  # counter reset
        sample = max(0.0, (depth - last.depth + finished) / dt)
        if last.rate is None:
            rate = sample
        else:
            alpha = 1.0 - math.exp(-math.log(2) * dt / self.half_life)
            rate = last.rate + alpha * (sample - last.rate)
        quiet_since = None if sample > 0 else (
            last.quiet_since if last.quiet_since is not None else last.time)
        if quiet_since is not None and now - quiet_since >= self.quiet_seconds:
            rate = 0.0
        self._last[queue] = _Last(now, depth, done, rate, quiet_since)
        return rate
