"""What the sender schedules from the finished-jobs stream (``visionq.callbacks.sender``), on a
real Redis no worker uses: a job's own callback_url always (within the retry window), the
global URL only for jobs that finished after webhooks began (no replay of the past)."""

from __future__ import annotations

import json
import time

import redis

from visionq.callbacks.destinations import AllowList
from visionq.callbacks.sender import CallbackSender
from visionq.callbacks.signing import CallbackSecrets
from visionq.keys import CALLBACK_DUE_KEY, CALLBACK_PENDING_KEY, HISTORY_STREAM_KEY


def finished(client: redis.Redis, job_id: str, at: float, callback_url: str = "") -> None:
    fields = {"id": job_id, "task": "classify", "status": "succeeded", "queued_at": at - 1,
              "finished_at": at, "attempts": 1, "result": json.dumps({"predictions": []}),
              "submitter": "key:0123456789abcdef"}
    if callback_url:
        fields["callback_url"] = callback_url
    client.xadd(HISTORY_STREAM_KEY, fields)


def test_what_gets_scheduled(idle_redis_url: str) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    now = time.time()
    finished(client, "ancient", now - 7200, "https://hooks.example.com/a")  # beyond retry_s
    finished(client, "before", now - 60, "https://hooks.example.com/b")
    finished(client, "before-plain", now - 60)
    sender = CallbackSender(client, CallbackSecrets("", b"s" * 32), AllowList.parse(""),
                            global_url="https://ops.example.com/all", retry_s=3600)
    assert sender.schedule_once(client, block=False) == 3
    finished(client, "after", time.time(), "https://hooks.example.com/c")
    finished(client, "after-plain", time.time())
    assert sender.schedule_once(client, block=False) == 2
    pending = {k.decode(): json.loads(v) for k, v in client.hgetall(CALLBACK_PENDING_KEY).items()}
    assert set(pending) == {"before:job", "after:job", "after:global", "after-plain:global"}
    assert pending["before:job"]["url"] == "https://hooks.example.com/b"
    assert json.loads(pending["after:job"]["body"])["id"] == "after"
    assert {m.decode() for m in client.zrange(CALLBACK_DUE_KEY, 0, -1)} == set(pending)
    # every entry is acknowledged: nothing left pending in the group
    assert client.xpending(HISTORY_STREAM_KEY, "callbacks")["pending"] == 0


def test_an_attempt_of_a_sender_that_died_is_made_by_another(idle_redis_url: str) -> None:
    """Sender A claims a delivery and dies before recording anything; once A's lease runs
    out, sender B makes the attempt: delivered at least once."""
    from tests.api.test_callbacks_live import Receiver, wait_for

    client = redis.Redis.from_url(idle_redis_url)
    receiver = Receiver().start()
    try:
        secrets, allow = CallbackSecrets("", b"s" * 32), AllowList.parse("127.0.0.1")
        dead = CallbackSender(client, secrets, allow, lease_s=1.0)
        finished(client, "orphan", time.time(), receiver.url)
        assert dead.schedule_once(client, block=False) == 1
        claimed = dead._claim(keys=[CALLBACK_DUE_KEY, CALLBACK_PENDING_KEY],
                              args=[repr(time.time()), repr(time.time() + 1.0), 10])
        assert claimed[0] == b"orphan:job"  # ... and A dies here, its attempt never made
        other = CallbackSender(client, secrets, allow, lease_s=1.0)
        assert other.dispatch_once(wait=True) == 0  # still A's
        wait_for(lambda: other.dispatch_once(wait=True), "A's lease to run out")
        assert len(receiver.deliveries("orphan:job")) == 1
        assert client.zcard(CALLBACK_DUE_KEY) == 0 and client.hlen(CALLBACK_PENDING_KEY) == 0
        other.stop()
        dead.stop()
    finally:
        receiver.stop()
