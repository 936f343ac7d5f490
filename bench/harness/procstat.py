"""CPU seconds used by process trees, resident memory and child processes, from /proc (no
psutil): what a run cost the machine, independent of other users' load."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU s incl. reaped children) of one process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / TICKS


def tree_cpu_s(roots: Iterable[int]) -> float:
    """CPU seconds of ``roots`` and all their live descendants (plus reaped children)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                table[int(entry)] = stat
    wanted = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in table.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    return sum(cpu for pid, (_, cpu) in table.items() if pid in wanted)


def rss_kb(pid: int) -> int:
    """Resident set size of one process; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):  # recycled between pgrep and the read
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (a Celery worker's pool processes)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]
