"""The progress line: throttled, and the last count always shown."""

from __future__ import annotations

import io

from visionq_client import Progress


def test_a_log_gets_the_first_and_last_counts_not_every_one() -> None:
    out = io.StringIO()
    bar = Progress(500, "stream detect", out)
    for i in range(500):
        bar.update(ok=i % 100 != 0)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "stream detect 1/500, 1 failed"
    assert lines[-1] == "stream detect 500/500, 5 failed" and len(lines) < 10


def test_an_unknown_total_still_ends_on_the_last_count() -> None:
    out = io.StringIO()
    bar = Progress(None, "batch", out)
    for _ in range(3):
        bar.update()
    bar.close()
    assert out.getvalue().splitlines()[-1] == "batch 3"
