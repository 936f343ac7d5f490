"""``/v1/stream`` against the real stack: a gunicorn API (threaded, one process so the
per-process limits are exact) and a real Celery worker running the sleepy test model,
whose image width says how long it takes (out-of-order completion, a job to kill)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from simple_websocket import ConnectionClosed, ConnectionError

from tests.conftest import BIN, REPO, WorkerFactory, service_env, spawn, stop_process, wait_http
from tests.helpers import free_port
from tests.workers.sleepy_model import image_bytes
from visionq.client import StreamClient, connect_stream
from visionq.jobs import JobStore
from visionq.stream_protocol import (
    CLOSE_CREDIT_EXCEEDED,
    CLOSE_IDLE,
    CLOSE_MALFORMED,
    CLOSE_TOO_BIG,
    CLOSE_UNAUTHORIZED,
    header_frame,
)

KEY = "stream-test-key"
WINDOW = 4
PER_KEY = 3
IDLE_S = 3
MAX_FRAME = 200_000
SLEEPY = {"VISIONQ_MODEL_CLASSIFY": "tests.workers.sleepy_model:SleepyModel"}
WAIT_S = 120
"""Bound of every wait: generous for a loaded machine; each returns once its condition holds."""
FAST = image_bytes(20)


@pytest.fixture(scope="module")
def stream_redis(redis_server) -> Iterator[str]:
    """DB 11 of the session Redis: only this module's worker consumes it (it lives for the
    session, so no other test may use DB 11: see the list in tests/conftest.py)."""
    url = f"redis://127.0.0.1:{redis_server[0]}/11"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


@pytest.fixture(scope="module")
def stream_worker(start_worker: WorkerFactory, stream_redis: str) -> subprocess.Popen:
    # Two pool processes: a fast image overtakes a slow one sent before it.
    # PYTHONPATH: the checkout's ``tests`` package, whatever else is installed as ``tests``.
    return start_worker(stream_redis, "classify", "stream", concurrency=2, **SLEEPY,
                        PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def stream_api(stream_redis: str, stream_worker: subprocess.Popen) -> Iterator[str]:
    port = free_port()
    command = [str(BIN / "gunicorn"), "--workers", "1", "--threads", "12", "--bind",
               f"127.0.0.1:{port}", "api:create_app()"]
    process = spawn("api-stream", command, service_env(
        stream_redis, VISIONQ_API_KEYS=KEY, VISIONQ_STREAM_WINDOW=str(WINDOW),
        VISIONQ_MAX_STREAMS_PER_KEY=str(PER_KEY), VISIONQ_MAX_STREAMS="8",
        VISIONQ_STREAM_IDLE_TIMEOUT_S=str(IDLE_S),
        VISIONQ_STREAM_MAX_FRAME_BYTES=str(MAX_FRAME), VISIONQ_HISTORY_WRITER="false"))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", process, "api-stream")
    yield url
    stop_process(process)


def connect(api: str, key: str | None = KEY) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return connect_stream(api.replace("http://", "ws://") + "/v1/stream", headers)


def receive(ws: Any) -> dict[str, Any]:
    raw = ws.receive(timeout=WAIT_S)
    assert raw is not None, "no frame from the server"
    return json.loads(raw)


def close_code(ws: Any) -> int:
    """Read until the server closes the connection; its close code."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            ws.receive(timeout=1)
        except ConnectionClosed:
            return int(ws.close_reason)
    raise AssertionError("the server did not close the connection")


def send_image(ws: Any, data: bytes, ref: str) -> None:
    ws.send(header_frame("classify", ref=ref))
    ws.send(data)


def test_every_image_gets_a_result_in_completion_order(stream_api: str) -> None:
    # The slow one (2 s) goes first; the fast ones sent after it finish before it.
    images = [("slow", image_bytes(200))] + [(f"fast-{i}", FAST) for i in range(7)]
    frames = list(StreamClient(stream_api, api_key=KEY).run(images, "classify"))
    assert sorted(f["ref"] for f in frames) == sorted(ref for ref, _ in images)
    assert all(f["status"] == "succeeded" and f["id"] for f in frames), frames
    assert frames[-1]["ref"] == "slow", [f["ref"] for f in frames]
    assert frames[0]["result"]["width"] == 20 and frames[-1]["result"]["width"] == 200
    assert {"queued_at", "finished_at", "total_ms"} <= set(frames[0]["timings"])


def test_credits_open_with_the_window_and_an_image_beyond_them_closes(stream_api: str) -> None:
    ws = connect(stream_api)
    assert receive(ws) == {"credit": WINDOW}
    for i in range(WINDOW + 1):  # 1 s each: none can finish and return a credit meanwhile
        send_image(ws, image_bytes(100), f"over-{i}")
    assert close_code(ws) == CLOSE_CREDIT_EXCEEDED


def test_a_bad_image_mid_stream_is_rejected_and_the_stream_goes_on(stream_api: str) -> None:
    images = [("good-1", FAST), ("junk", b"this is not an image"), ("good-2", FAST)]
    frames = {f["ref"]: f for f in StreamClient(stream_api, api_key=KEY).run(images, "classify")}
    assert frames["junk"]["status"] == "rejected" and frames["junk"]["id"] is None
    assert frames["junk"]["http_status"] == 400 and frames["junk"]["code"], frames["junk"]
    assert frames["good-1"]["status"] == frames["good-2"]["status"] == "succeeded"


def test_the_rest_apis_error_codes_per_image(stream_api: str) -> None:
    ws = connect(stream_api)
    assert receive(ws) == {"credit": WINDOW}
    ws.send(json.dumps({"task": "nope", "ref": "t"}))
    ws.send(FAST)
    ws.send(json.dumps({"task": "classify", "ref": "o", "options": {"top_k": "x"}}))
    ws.send(FAST)
    ws.send(json.dumps({"task": "classify", "ref": "c",
                        "callback_url": "http://169.254.169.254/latest/meta-data/"}))
    ws.send(FAST)
    ws.send(json.dumps({"task": "classify", "ref": "ok", "callback_url": "https://8.8.8.8/h"}))
    ws.send(FAST)
    codes, accepted = {}, None
    while len(codes) < 3 or accepted is None:
        frame = receive(ws)
        if frame.get("status") == "rejected":
            codes[frame["ref"]] = frame["code"]
        elif frame.get("ref") == "ok" and frame.get("status") == "queued":
            accepted = frame["id"]
    assert codes == {"t": "unknown_task", "o": "invalid_options", "c": "callback_refused"}
    ws.close()
    job = requests.get(f"{stream_api}/v1/jobs/{accepted}", timeout=WAIT_S,
                       headers={"Authorization": f"Bearer {KEY}"}).json()
    assert job["callbacks"] == [], "the stream's job carries its callback_url"  # no sender


@pytest.mark.parametrize("frames", [["not json"], [b"an image with no header"],
                                    [json.dumps({"task": "classify"}), "text, not the image"],
                                    [json.dumps({"image": "x"})]])
def test_a_malformed_frame_closes_with_its_code(stream_api: str, frames: list) -> None:
    ws = connect(stream_api)
    assert receive(ws) == {"credit": WINDOW}
    for frame in frames:
        ws.send(frame)
    assert close_code(ws) == CLOSE_MALFORMED


def test_a_frame_beyond_the_limit_closes_with_1009(stream_api: str) -> None:
    ws = connect(stream_api)
    assert receive(ws) == {"credit": WINDOW}
    send_image(ws, b"\0" * (MAX_FRAME + 1), "huge")
    assert close_code(ws) == CLOSE_TOO_BIG


def test_key_in_the_first_frame_or_closed_unauthorized(stream_api: str) -> None:
    with pytest.raises(ConnectionError) as refused:  # a wrong key in the headers: HTTP 401
        connect(stream_api, key="wrong")
    assert refused.value.status_code == 401
    ws = connect(stream_api, key=None)
    ws.send(json.dumps({"auth": KEY}))
    assert receive(ws) == {"credit": WINDOW}
    ws.close()
    ws = connect(stream_api, key=None)
    ws.send(json.dumps({"auth": "wrong"}))
    assert close_code(ws) == CLOSE_UNAUTHORIZED


def test_a_page_on_another_origin_cannot_open_a_stream(stream_api: str) -> None:
    """Cross-site WebSocket hijacking: a browser sends the page's Origin on the upgrade."""
    url = stream_api.replace("http://", "ws://") + "/v1/stream"
    for headers in ({"Origin": "https://evil.example"},
                    {"Origin": "https://evil.example", "Authorization": f"Bearer {KEY}"},
                    {"Sec-Fetch-Site": "cross-site", "Authorization": f"Bearer {KEY}"}):
        with pytest.raises(ConnectionError) as refused:
            connect_stream(url, headers)
        assert refused.value.status_code == 403, headers
    # The service's own page.  simple-websocket sends ``Host`` without the port (a browser
    # sends it), so its own origin is the port-less one.
    ws = connect_stream(url, {"Origin": "http://127.0.0.1", "Authorization": f"Bearer {KEY}"})
    assert receive(ws) == {"credit": WINDOW}
    ws.close()


def connect_when_free(api: str) -> Any:
    """A stream as soon as a slot is free (an earlier test's stream may be closing)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            ws = connect(api)
        except ConnectionError as exc:
            assert exc.status_code == 503 and time.monotonic() < deadline, exc
            time.sleep(0.1)
            continue
        assert receive(ws) == {"credit": WINDOW}
        return ws


def test_streams_per_key_are_limited_and_idle_ones_closed(stream_api: str) -> None:
    open_ = [connect_when_free(stream_api) for _ in range(PER_KEY)]
    with pytest.raises(ConnectionError) as refused:
        connect(stream_api)
    assert refused.value.status_code == 503
    # Nothing sent and nothing pending: each is closed after the idle timeout.
    assert [close_code(ws) for ws in open_] == [CLOSE_IDLE] * PER_KEY
    connect_when_free(stream_api).close()  # the slots are free again


def test_plain_http_on_the_stream_path_is_a_json_426(stream_api: str) -> None:
    response = requests.get(f"{stream_api}/v1/stream", timeout=10,
                            headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 426 and response.json()["code"] == "websocket_required"


def _wait_running(url: str, job_id: str) -> None:
    store = JobStore(redis.Redis.from_url(url), 3600)
    deadline = time.monotonic() + WAIT_S
    while (job := store.get(job_id)) is None or job.status != "running":
        assert time.monotonic() < deadline, f"job {job_id} never ran"
        time.sleep(0.05)


def test_a_killed_worker_mid_stream_still_gets_the_result(
        stream_api: str, stream_redis: str, stream_worker: subprocess.Popen) -> None:
    ids: dict[str, str] = {}

    def on_frame(frame: dict[str, Any]) -> None:
        if frame.get("status") == "queued":
            ids[frame["ref"]] = frame["id"]
            if frame["ref"] == "victim":
                _wait_running(stream_redis, frame["id"])
                for child in _children(stream_worker.pid):  # the pool dies mid-job
                    os.kill(child, signal.SIGKILL)

    images = [("victim", image_bytes(300)), ("after", FAST)]
    frames = {f["ref"]: f for f in StreamClient(stream_api, api_key=KEY).run(
        images, "classify", on_frame=on_frame)}
    assert frames["victim"]["status"] == "succeeded", frames["victim"]
    assert frames["victim"]["attempts"] == 2 and frames["victim"]["id"] == ids["victim"]
    assert frames["after"]["status"] == "succeeded"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_a_client_that_disconnects_loses_no_accepted_job(stream_api: str) -> None:
    ws = connect(stream_api)
    assert receive(ws) == {"credit": WINDOW}
    for i in range(3):
        send_image(ws, image_bytes(100), f"left-{i}")
    ids = []
    while len(ids) < 3:
        frame = receive(ws)
        if frame.get("status") == "queued":
            ids.append(frame["id"])
    ws.close()  # gone before any of them finished
    headers = {"Authorization": f"Bearer {KEY}"}
    for job_id in ids:
        job = requests.get(f"{stream_api}/v1/jobs/{job_id}", params={"wait": 60},
                           headers=headers, timeout=90).json()
        assert job["status"] == "succeeded", job


def test_a_full_queue_withholds_credits_instead_of_refusing(
        stream_redis: str, test_worker: WorkerFactory) -> None:
    """No worker serves ``detect`` yet and its backlog limit is 2: two images become jobs,
    the other two wait on the server (no credit comes back, nothing is rejected) until a
    worker drains the queue."""
    port = free_port()
    process = spawn("api-stream-full", [
        str(BIN / "gunicorn"), "--workers", "1", "--threads", "4", "--bind",
        f"127.0.0.1:{port}", "api:create_app()"], service_env(
        stream_redis, VISIONQ_API_KEYS=KEY, VISIONQ_STREAM_WINDOW=str(WINDOW),
        VISIONQ_MAX_BACKLOG_DETECT="2", VISIONQ_HISTORY_WRITER="false"))
    api = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{api}/healthz", process, "api-stream-full")
        ws = connect(api)
        assert receive(ws) == {"credit": WINDOW}
        for i in range(WINDOW):
            ws.send(header_frame("detect", ref=f"d{i}"))
            ws.send(FAST)
        frames = [receive(ws), receive(ws)]
        assert [f["status"] for f in frames] == ["queued", "queued"], frames
        assert redis.Redis.from_url(stream_redis).llen("detect") == 2
        test_worker(stream_redis, "detect", "stream-detect", **{
            "VISIONQ_MODEL_DETECT": SLEEPY["VISIONQ_MODEL_CLASSIFY"], "SLEEPY_TASK": "detect",
            "PYTHONPATH": str(REPO)})
        worker_started = len(frames)
        while sum(f.get("status") in ("succeeded", "failed", "rejected") for f in frames) < WINDOW:
            frames.append(receive(ws))
        ws.close()
    finally:
        stop_process(process)
    statuses = [f.get("status") for f in frames]
    assert "rejected" not in statuses, frames
    assert statuses.count("succeeded") == WINDOW
    late_acks = [f["ref"] for f in frames[worker_started:] if f.get("status") == "queued"]
    assert sorted(late_acks) == ["d2", "d3"]  # admitted only once the worker drained the queue


def test_the_stream_command_prints_a_line_per_image(stream_api: str, tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"frame-{i}.png").write_bytes(image_bytes(20 + i))
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("not an image file name: skipped")
    done = subprocess.run(
        [str(BIN / "visionq"), "stream", str(tmp_path), "--task", "classify", "--window", "2",
         "--url", stream_api], capture_output=True, text=True, timeout=WAIT_S,
        env={**os.environ, "VISIONQ_API_KEY": KEY})
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(Path(f["ref"]).name for f in lines) == [
        "frame-0.png", "frame-1.png", "frame-2.png", "junk.jpg"], done.stderr
    by_name = {Path(f["ref"]).name: f for f in lines}
    assert by_name["junk.jpg"]["status"] == "rejected"
    assert [by_name[f"frame-{i}.png"]["result"]["width"] for i in range(3)] == [20, 21, 22]
    assert done.returncode == 1  # one image was rejected



def test_an_idempotent_ref_sent_twice_is_one_job(stream_api: str) -> None:
    ref = f"cam7/{time.time_ns()}"
    finals: list[dict[str, Any]] = []
    for round_ in (1, 2):  # twice on one stream, then twice again on another
        ws = connect(stream_api)
        assert receive(ws) == {"credit": WINDOW}
        for _ in range(2):
            ws.send(header_frame("classify", ref=ref, idempotent=True))
            ws.send(FAST)
        while len(finals) < 2 * round_:
            frame = receive(ws)
            if frame.get("status") in ("succeeded", "failed", "rejected"):
                finals.append(frame)
        ws.close()
    assert [f["status"] for f in finals] == ["succeeded"] * 4, finals
    assert len({f["id"] for f in finals}) == 1 and {f["ref"] for f in finals} == {ref}
