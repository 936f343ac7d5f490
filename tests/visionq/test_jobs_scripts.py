"""``visionq.jobs.scripts``: the job records' Lua is read from the ``.lua`` files beside it,
and the scripts that end a job carry the history stream's ``XADD`` (``history_xadd.lua``)
with its placeholders filled."""

from __future__ import annotations

from pathlib import Path

from visionq.jobs import scripts
from visionq.keys import JOB_KEY_PREFIX

HERE = Path(scripts.__file__).parent


def test_each_script_is_its_lua_file() -> None:
    assert (HERE / "admit.lua").read_text() == scripts.ADMIT
    assert (HERE / "begin.lua").read_text() == scripts.BEGIN
    for name, script in (("finish.lua", scripts.FINISH), ("revoke.lua", scripts.REVOKE)):
        text = (HERE / name).read_text()
        assert text.count("-- $HISTORY_XADD\n") == 1, name
        assert script == text.replace("-- $HISTORY_XADD\n", scripts.HISTORY_XADD)


def test_the_end_of_a_job_goes_to_the_history_stream_before_it_is_announced() -> None:
    xadd = (f"redis.call('XADD', KEYS[4], 'MAXLEN', '~', {scripts.HISTORY_STREAM_MAXLEN}, "
            f"'*', 'id', string.sub(KEYS[1], {len(JOB_KEY_PREFIX) + 1}), ")
    assert xadd in scripts.HISTORY_XADD
    for script in (scripts.FINISH, scripts.REVOKE):
        assert "$" not in script
        assert script.index(xadd) < script.index("redis.call('PUBLISH', KEYS[3]")
