"""The job records' Lua scripts, one ``.lua`` file each beside this module: ``admit``
(records and messages, all or nothing, after the backlog check), ``begin`` (mark running,
read the record), ``finish`` (the first finish wins) and ``revoke`` (fail a queued job).
``finish`` and ``revoke`` include ``history_xadd.lua``: a job that ends is appended to the
``visionq:history`` stream in the same atomic step."""

from __future__ import annotations

from pathlib import Path

from visionq.keys import JOB_KEY_PREFIX

HISTORY_STREAM_MAXLEN = 1_000_000
"""Final records waiting in the ``visionq:history`` stream for the history store (trimmed
approximately): how many jobs can finish while the store is down before any is lost.  With
no history writer draining it (no API process, or VISIONQ_HISTORY_WRITER=false everywhere)
the stream stops growing at this many entries (about 1 KB each; docs/api.md, "Job history")."""

REVOKED, REVOKE_TOO_LATE, REVOKE_FINAL, REVOKE_UNKNOWN = 1, 2, 0, -1
"""What ``revoke.lua`` returns (``JobStore.revoke``)."""

_HERE = Path(__file__).parent
_INCLUDE = "-- $HISTORY_XADD\n"


def _read(name: str) -> str:
    return (_HERE / name).read_text()


HISTORY_XADD = (_read("history_xadd.lua")
                .replace("$MAXLEN", str(HISTORY_STREAM_MAXLEN))
                .replace("$ID_FROM", str(len(JOB_KEY_PREFIX) + 1)))
ADMIT = _read("admit.lua")
BEGIN = _read("begin.lua")
FINISH = _read("finish.lua").replace(_INCLUDE, HISTORY_XADD)
REVOKE = _read("revoke.lua").replace(_INCLUDE, HISTORY_XADD)

for _script in (ADMIT, BEGIN, FINISH, REVOKE):
    if "$" in _script:  # a placeholder left unfilled would be a Lua syntax error later
        raise RuntimeError(f"visionq.jobs.scripts: unfilled placeholder in {_script[:80]!r}")
