"""End to end with real parts: the API under gunicorn, `celery -A tasks worker -Q face`
on a real Redis, the real face model.  Boxes must match face_recognition's own: exactly from
a worker whose ``VISIONQ_FACE_DETECTOR`` is ``hog`` (the worker decodes a photo at its own
detector's scale before it reads the job's options), within IoU 0.5 with the default
(YuNet)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import face_recognition
import pytest
import redis
import requests

from tests.conftest import BIN, FIXTURES, WorkerFactory, start_api
from tests.helpers import iou, stop_process
from visionq.imaging import decode

FACES = FIXTURES / "faces"
WAIT_S = 180
"""Bound of the waits for a job: generous for a loaded machine; each returns once final."""
BAD = FIXTURES / "bad"
CASES = json.loads((BAD / "cases.json").read_text())["cases"]
FACE_FILES = sorted(p.name for p in FACES.glob("*") if p.suffix in (".jpg", ".png"))


def run_job(api_url: str, path: Path | bytes, task: str = "face", wait: int = 30,
            options: dict | None = None) -> dict:
    """Submit, then long-poll (``wait`` s at a time) until the job is final or
    ``WAIT_S`` has passed; the job as last read."""
    data = path if isinstance(path, bytes) else path.read_bytes()
    form = {"options": json.dumps(options)} if options else None
    response = requests.post(f"{api_url}/v1/jobs", params={"task": task}, data=form,
                             files={"image": ("img", data)}, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    deadline = time.monotonic() + WAIT_S
    while True:
        job = requests.get(f"{api_url}/v1/jobs/{job_id}", params={"wait": wait},
                           timeout=wait + 30)
        assert job.status_code == 200
        if job.json()["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return job.json()


def reference_boxes(path: Path) -> list[tuple[int, int, int, int]]:
    pixels = decode(path.read_bytes()).pixels
    return [(left, top, right, bottom) for top, right, bottom, left in
            face_recognition.face_locations(pixels, number_of_times_to_upsample=1)]


@pytest.fixture(scope="module")
def hog_api_url(redis_server: tuple[int, subprocess.Popen],
                start_worker: WorkerFactory) -> Iterator[str]:
    """An API and a face worker with ``VISIONQ_FACE_DETECTOR=hog`` on their own Redis DB."""
    url = f"redis://127.0.0.1:{redis_server[0]}/13"
    redis.Redis.from_url(url).flushdb()
    start_worker(url, "face", "facehog", VISIONQ_FACE_DETECTOR="hog")
    api, process = start_api(url, "api-hog", VISIONQ_FACE_DETECTOR="hog")
    yield api
    stop_process(process)


@pytest.mark.parametrize("name", FACE_FILES)
def test_face_boxes_match_face_recognition(hog_api_url: str, name: str) -> None:
    """With ``upsample`` given, a HOG worker scans the photo at full size as face_recognition
    does (``face_locations(..., number_of_times_to_upsample=1)``): the same boxes."""
    job = run_job(hog_api_url, FACES / name, options={"upsample": 1})
    assert job["result"]["face_detector"] == "hog"
    assert job["status"] == "succeeded", job
    result = job["result"]
    expected = reference_boxes(FACES / name)
    got = [(f["x_min"], f["y_min"], f["x_max"], f["y_max"]) for f in result["faces"]]
    assert len(got) == len(expected)
    for box in expected:
        assert max(iou(box, other) for other in got) >= 0.9
    for face in result["faces"]:
        assert len(face["landmarks"]["chin"]) == 17
    assert (result["width"], result["height"]) == (decode((FACES / name).read_bytes()).width,
                                                   decode((FACES / name).read_bytes()).height)
    timings = job["timings"]
    assert timings["queue_wait_ms"] >= 0 and timings["inference_ms"] > 0


@pytest.mark.parametrize("name", ["obama.jpg", "obama_and_biden.jpg", "two_people.jpg"])
def test_default_scale_finds_the_same_faces(api_url: str, face_worker: subprocess.Popen,
                                            name: str) -> None:
    """The default decode-scale policy (``workers/plugins/face_scale.py``) scans a 1 MP
    photo at a reduced size: the same faces, boxes within one HOG pyramid step."""
    job = run_job(api_url, FACES / name)
    assert job["status"] == "succeeded", job
    got = [(f["x_min"], f["y_min"], f["x_max"], f["y_max"]) for f in job["result"]["faces"]]
    expected = reference_boxes(FACES / name)
    assert len(got) == len(expected)
    for box in expected:
        assert max(iou(box, other) for other in got) >= 0.5


def test_no_face_image_gives_empty_list(api_url: str, face_worker: subprocess.Popen) -> None:
    job = run_job(api_url, FACES / "000000000009.jpg")
    assert job["status"] == "succeeded" and job["result"]["faces"] == []


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c["expect_status"] == 200))
def test_odd_but_valid_images(api_url: str, face_worker: subprocess.Popen, name: str) -> None:
    """HOG's boxes (``cases.json`` holds face_recognition's)."""
    case = CASES[name]
    job = run_job(api_url, BAD / name, options={"face_detector": "hog"})
    assert job["status"] == "succeeded", job
    faces = job["result"]["faces"]
    assert len(faces) == case["expect_faces"]
    if "expect_box_trbl" in case:
        top, right, bottom, left = case["expect_box_trbl"]
        got = faces[0]
        assert iou((left, top, right, bottom),
                   (got["x_min"], got["y_min"], got["x_max"], got["y_max"])) >= 0.9


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c["expect_status"] == 200))
def test_odd_but_valid_images_default_detector(api_url: str, face_worker: subprocess.Popen,
                                               name: str) -> None:
    """The same images with the default detector (YuNet): the same faces, boxes within the
    face fixtures' IoU 0.5."""
    case = CASES[name]
    job = run_job(api_url, BAD / name)
    assert job["status"] == "succeeded", job
    assert job["result"]["face_detector"] == "yunet"
    faces = job["result"]["faces"]
    assert len(faces) == case["expect_faces"]
    if "expect_box_trbl" in case:
        top, right, bottom, left = case["expect_box_trbl"]
        got = faces[0]
        assert iou((left, top, right, bottom),
                   (got["x_min"], got["y_min"], got["x_max"], got["y_max"])) >= 0.5


def test_long_poll_waits_for_the_result(api_url: str, face_worker: subprocess.Popen) -> None:
    response = requests.post(f"{api_url}/v1/jobs?task=face",
                             files={"image": (FACES / "obama.jpg").read_bytes()}, timeout=10)
    job_id = response.json()["id"]
    started = time.monotonic()
    job = requests.get(f"{api_url}/v1/jobs/{job_id}?wait=30", timeout=40).json()
    assert job["status"] == "succeeded"
    assert time.monotonic() - started < 25
    again = requests.get(f"{api_url}/v1/jobs/{job_id}", timeout=5).json()
    assert again["result"] == job["result"]


def test_submit_with_wait_returns_the_finished_job(api_url: str,
                                                 face_worker: subprocess.Popen) -> None:
    response = requests.post(f"{api_url}/v1/jobs?task=face&wait=30",
                             files={"image": (FACES / "obama.jpg").read_bytes()}, timeout=40)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded" and len(job["result"]["faces"]) == 1
    assert response.headers["Location"].endswith(f"/v1/jobs/{job['id']}")
    again = requests.get(f"{api_url}/v1/jobs/{job['id']}", timeout=5).json()
    assert again["result"] == job["result"]


def test_blob_is_deleted_when_the_job_is_done(api_url: str, face_worker: subprocess.Popen,
                                              redis_url: str) -> None:
    import redis

    job = run_job(api_url, FACES / "obama_small.jpg")
    assert job["status"] == "succeeded"
    blob = redis.Redis.from_url(redis_url).hget(f"visionq:job:{job['id']}", "blob")
    assert blob and not redis.Redis.from_url(redis_url).exists(blob)


def test_cli_submit_prints_the_result(api_url: str, face_worker: subprocess.Popen) -> None:
    out = subprocess.run([str(BIN / "visionq"), "submit", str(FACES / "obama_small.jpg"),
                          "--task", "face", "--url", api_url, "--wait", "30"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["status"] == "succeeded" and len(job["result"]["faces"]) == 1
    status = subprocess.run([str(BIN / "visionq"), "status", job["id"], "--url", api_url],
                            capture_output=True, text=True, timeout=30)
    assert json.loads(status.stdout)["id"] == job["id"]
    bad = subprocess.run([str(BIN / "visionq"), "submit", str(BAD / "text_not_image.jpg"),
                          "--url", api_url], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "not_an_image" in bad.stderr


def test_readyz_reports_workers(api_url: str, face_worker: subprocess.Popen) -> None:
    body = requests.get(f"{api_url}/readyz", timeout=5).json()
    assert body["redis"] == "ok" and body["workers"]["face"] >= 1


CLASSIFY = FIXTURES / "classify"


@pytest.fixture(scope="session")
def classify_worker(start_worker, redis_url: str) -> subprocess.Popen:
    return start_worker(redis_url, "classify", "classify", concurrency=2,
                        VISIONQ_CLASSIFY_THREADS="1")


def test_classify_through_the_queue(api_url: str, classify_worker: subprocess.Popen) -> None:
    labels = json.loads((CLASSIFY / "labels.json").read_text())["images"]
    for name, truth in labels.items():
        job = run_job(api_url, CLASSIFY / name, task="classify")
        assert job["status"] == "succeeded", job
        top = job["result"]["predictions"]
        assert top == sorted(top, key=lambda p: -p["confidence"])
        assert truth["label_index"] in [p["class_id"] for p in top], (name, top)
        assert str(top[0]["class_id"]) in truth["acceptable_top1"], (name, top[0])


def test_a_bad_image_fails_the_job_not_the_worker(api_url: str, classify_worker: subprocess.Popen,
                                                  redis_url: str) -> None:
    import redis as redis_lib

    from tasks import enqueue, make_celery
    from visionq.blobstore import RedisBlobStore
    from visionq.jobs import JobStore
    from visionq.settings import Settings

    # Bypass the API's header check: a truncated JPEG reaches the worker directly.
    client = redis_lib.Redis.from_url(redis_url)
    blob = RedisBlobStore(client, 60).put((BAD / "truncated.jpg").read_bytes())
    job = JobStore(client, 60).create("classify", blob)
    enqueue(make_celery(Settings(redis_url=redis_url)), "classify", job.id)
    done = JobStore(client, 60).wait(job.id, WAIT_S)
    assert done.status == "failed" and done.code == "truncated_image"
    assert classify_worker.poll() is None
    after = run_job(api_url, CLASSIFY / "coffee.png", task="classify")
    assert after["status"] == "succeeded"
    assert after["result"]["predictions"][0]["label"] == "espresso"


def test_password_protected_external_redis(test_worker, tmp_path) -> None:
    """REDIS_URL with a password: the API, the worker and the job store all use it."""
    from tests.conftest import free_port, spawn, start_api, stop_process
    from visionq.embedded_redis import server_command, wait_ready

    port = free_port()
    server = spawn("redis-password", server_command(port, None, persistent=False)
                   + ["--requirepass", "s3cret"], dict(__import__("os").environ))
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    try:
        wait_ready(url, WAIT_S, server)
        test_worker(url, "classify", "password", VISIONQ_CLASSIFY_THREADS="1")
        api, api_process = start_api(url, "api-password")
        try:
            job = run_job(api, CLASSIFY / "coffee.png", task="classify")
            assert job["status"] == "succeeded"
            assert job["result"]["predictions"][0]["label"] == "espresso"
        finally:
            stop_process(api_process)
        import redis as redis_lib

        with pytest.raises(redis_lib.AuthenticationError):
            redis_lib.Redis(port=port).ping()  # and it really needs the password
    finally:
        stop_process(server)
