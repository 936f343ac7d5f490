"""Backends only apply decisions; they never decide.

``current()`` reports capacity per pool (queue), ``apply(desired)`` asks for that many
workers per pool and returns what was actually requested (after the backend's own
limits), ``protect(ids)`` marks exactly these workers busy so scale-in never picks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Capacity:
    current: int = 0
    """Workers serving."""
    pending: int = 0
    """Workers requested and still starting."""
    draining: int = 0
    """Workers finishing in-flight work before they go (not counted as capacity)."""
    ids: tuple[str, ...] = field(default_factory=tuple)
    """Identifiers of serving and pending workers (instance ids, pids)."""


@runtime_checkable
class Backend(Protocol):
    def current(self) -> dict[str, Capacity]: ...

    def apply(self, desired: Mapping[str, int]) -> dict[str, int]: ...

    def protect(self, ids: Iterable[str]) -> None: ...


@runtime_checkable
class Drains(Protocol):
    """Backends whose workers wait for a go-ahead before terminating (lifecycle hooks)."""

    def release_drained(self, busy: Iterable[str]) -> list[str]: ...
