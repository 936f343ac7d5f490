"""Retries: the policy, and against the live API through a proxy that loses an answer or
says 503 once.  A lost submit answer, retried with the same Idempotency-Key, is still one
job."""

from __future__ import annotations

import pytest
import requests
from imagegen import png
from proxy import running
from visionq_client import NO_RETRY, Client, RetryPolicy, VisionqError
from visionq_client.retry import never_connected, retry_after


@pytest.mark.parametrize(("attempt", "after", "expected"), [
    (1, 2.0, 2.0),      # the server's Retry-After
    (1, 0.0, 0.0),
    (1, 31.0, None),    # longer than max_retry_after_s: give up, the caller decides
    (4, 1.0, None),     # no attempt left
])
def test_policy_follows_retry_after(attempt: int, after: float, expected: float | None) -> None:
    assert RetryPolicy(attempts=4).delay(attempt, after) == expected


@pytest.mark.parametrize("attempt", [1, 2, 3, 6])
def test_backoff_doubles_with_jitter_and_a_cap(attempt: int) -> None:
    policy = RetryPolicy(attempts=10, backoff_s=0.5, max_backoff_s=2.0)
    base = min(2.0, 0.5 * 2 ** (attempt - 1))
    assert all(base / 2 <= policy.delay(attempt) <= base for _ in range(50))


@pytest.mark.parametrize(("value", "seconds"), [("3", 3.0), ("0.5", 0.5), (None, None),
                                                 ("soon", None), ("-1", 0.0)])
def test_retry_after_header(value: str | None, seconds: float | None) -> None:
    assert retry_after(value) == seconds


def test_a_refused_connection_never_connected() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(requests.ConnectionError) as caught:
        Client(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=2, backoff_s=0.01)
               ).job("x")
    assert never_connected(caught.value)


def test_a_lost_submit_answer_is_retried_as_the_same_job(api_url: str, api_key: str | None,
                                                         face_task: str) -> None:
    with running(api_url, "lose") as proxy:
        job = Client(proxy.url, api_key=api_key).submit(png(16, 16), face_task)
    posts = [headers for method, path, headers in proxy.seen if method == "POST"]
    assert len(posts) == 2  # the first answer was lost, the retry got one
    keys = {h.get("Idempotency-Key") for h in posts}
    assert len(keys) == 1 and None not in keys
    direct = Client(api_url, api_key=api_key)
    assert direct.wait(job, 120).succeeded
    # The API made one job for both requests: the same key again replays it.
    again = direct.submit(png(16, 16), face_task, idempotency_key=keys.pop())
    assert again.id == job.id


def test_without_retries_the_lost_answer_raises(api_url: str, api_key: str | None,
                                                face_task: str) -> None:
    with running(api_url, "lose") as proxy, pytest.raises(requests.ConnectionError):
        Client(proxy.url, api_key=api_key, retry=NO_RETRY).submit(png(16, 16), face_task)


def test_a_503_with_retry_after_is_waited_out(api_url: str, api_key: str | None,
                                              face_task: str) -> None:
    with running(api_url, "busy", times=2) as proxy:
        job = Client(proxy.url, api_key=api_key).run(png(16, 16), face_task, timeout_s=120)
    assert job.succeeded
    with running(api_url, "busy", times=5) as proxy, pytest.raises(VisionqError) as caught:
        Client(proxy.url, api_key=api_key, retry=RetryPolicy(attempts=2)).submit(
            png(16, 16), face_task)
    assert caught.value.status == 503 and caught.value.retry_after_s == 1.0
