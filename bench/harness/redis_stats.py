"""What Redis itself spent: CPU seconds (``INFO cpu``) and commands by name (``INFO
commandstats``, which also counts the commands our Lua scripts run), as snapshots whose
difference covers a measured window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis


@dataclass(frozen=True)
class Snapshot:
    cpu_s: float
    calls: dict[str, int]


class RedisStats:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def snapshot(self) -> Snapshot:
        cpu = self.client.info("cpu")
        stats = self.client.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(value["calls"])
                 for name, value in stats.items() if isinstance(value, dict)}
        return Snapshot(float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls)

    @staticmethod
    def delta(before: Snapshot, after: Snapshot, exclude: tuple[str, ...] = ("info",)
              ) -> dict[str, Any]:
        """CPU seconds and calls between two snapshots; our own ``INFO`` calls left out."""
        by_command = {name: calls - before.calls.get(name, 0)
                      for name, calls in after.calls.items() if name not in exclude}
        by_command = {name: calls for name, calls in by_command.items() if calls > 0}
        return {"cpu_s": after.cpu_s - before.cpu_s, "commands": sum(by_command.values()),
                "by_command": by_command}
