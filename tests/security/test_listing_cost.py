"""Issue 30, item 6: ``GET /v1/jobs?status=...`` read (and JSON-parsed) every recent record
in full to filter it; now it reads status, task and submitter first and only the matches
in full.  Counted in Redis's own command statistics, not timed."""

from __future__ import annotations

import redis

from tests.api.conftest import AppFactory
from visionq.jobs import JobStore

RECENT = 300
RESULT = {"labels": [{"label": "x" * 40, "confidence": 0.5}] * 100}  # ~6 KB a record


def _calls(conn: redis.Redis, command: str) -> int:
    return int(conn.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_filtered_listing_reads_only_the_matching_records(idle_redis_url: str,
                                                            make_client: AppFactory) -> None:
    conn = redis.Redis.from_url(idle_redis_url)
    jobs = JobStore(conn, ttl_s=600)
    queued = jobs.create("face", "blob-queued")
    for index in range(RECENT):
        job = jobs.create("classify", f"blob-{index}")
        jobs.begin(job.id, "w1")
        jobs.succeed(job.id, RESULT)
    client = make_client(idle_redis_url)
    conn.config_resetstat()
    listed = client.get("/v1/jobs?status=queued&limit=10").get_json()["jobs"]
    assert [job["id"] for job in listed] == [queued.id]
    assert _calls(conn, "hgetall") == 1  # the match only (was one per recent job: 301)
    assert _calls(conn, "hmget") >= RECENT  # status, task and submitter of each
    conn.config_resetstat()
    by_task = client.get("/v1/jobs?task=face").get_json()["jobs"]
    assert [job["id"] for job in by_task] == [queued.id] and _calls(conn, "hgetall") == 1
