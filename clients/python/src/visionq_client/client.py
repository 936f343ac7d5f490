"""``Client``: visionq's job API (submit, wait, run, batch), its stream and its
DeepStack-compatible endpoints, over ``requests``."""

from __future__ import annotations

import glob
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import requests

from visionq_client.errors import VisionqError
from visionq_client.models import (
    FaceMatch,
    FacePrediction,
    Job,
    Label,
    ObjectPrediction,
    Registration,
    StreamResult,
)
from visionq_client.progress import Progress
from visionq_client.retry import (
    RETRY_CODES,
    RETRY_STATUSES,
    RetryPolicy,
    never_connected,
    retry_after,
)
from visionq_client.stream import ImageInput, read_image, stream_frames, ws_url

DEFAULT_URL = "http://127.0.0.1:8000"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MAX_POLL_S = 30.0
"""Longest single long-poll (the server caps ``?wait`` at ``VISIONQ_MAX_WAIT_S``, 60)."""


def image_files(source: str | Path) -> list[Path]:
    """Every image file in directory ``source`` (recursively), else the files ``source``
    matches as a glob (``frames/*.jpg``, ``cams/**/*.jpg``), sorted."""
    root = Path(source)
    if root.is_dir():
        return sorted(p for p in root.rglob("*")
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(Path(p) for p in glob.glob(str(source), recursive=True) if Path(p).is_file())


def _error(response: requests.Response) -> VisionqError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return VisionqError(response.status_code, str(body.get("code") or "error"),
                        str(body.get("error") or response.text[:200]),
                        retry_after(response.headers.get("Retry-After")))


class Client:
    """One API (``base_url``) and key.  Every call raises ``VisionqError`` for an error
    answer; connection errors and 503s are retried as ``retry`` says (``visionq_client.retry``).

    >>> client = Client("http://127.0.0.1:8000", api_key="key1")
    >>> job = client.run("cat.jpg", "classify")
    >>> job.result["predictions"][0]["label"]
    """

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None,
                 timeout_s: float = 30.0, retry: RetryPolicy | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s
        self.retry = retry if retry is not None else RetryPolicy()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------

    def _request(self, method: str, path: str, *, replayable: bool,
                 files: Any = None, **kwargs: Any) -> dict[str, Any]:
        """The JSON body of a 2xx answer.  ``replayable``: repeating the request after a
        connection error mid-request is harmless (a GET, or a submit with an
        Idempotency-Key); otherwise only a request that never connected is repeated.
        ``files`` is a callable building the upload afresh for each attempt."""
        kwargs.setdefault("timeout", self.timeout_s)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.session.request(method, self.base_url + path,
                                                files=files() if files else None, **kwargs)
            except requests.RequestException as exc:
                if not (replayable or never_connected(exc)):
                    raise
                delay = self.retry.delay(attempt)
                if delay is None:
                    raise
            else:
                if response.status_code < 400:
                    return response.json()
                error = _error(response)
                retryable = response.status_code in RETRY_STATUSES or (
                    response.status_code == 409 and error.code in RETRY_CODES)
                delay = self.retry.delay(attempt, error.retry_after_s) if retryable else None
                if delay is None:
                    raise error
            time.sleep(delay)

    # -- job API -----------------------------------------------------------------------

    def submit(self, image: ImageInput, task: str, options: dict[str, Any] | None = None,
               *, idempotency_key: str | None = None) -> Job:
        """Queue one image (a path or its bytes) for ``task`` (``face``, ``detect``,
        ``classify`` or ``custom/<model>``): the job, status ``queued``.  Sent with an
        ``Idempotency-Key`` (a fresh one unless given), so a retry never makes two jobs."""
        data = read_image(image)
        form = {"options": json.dumps(options)} if options else {}
        key = idempotency_key or uuid.uuid4().hex
        body = self._request("POST", "/v1/jobs", replayable=True, params={"task": task},
                             files=lambda: {"image": ("image", data)}, data=form,
                             headers={"Idempotency-Key": key})
        return Job.from_json(body)

    def job(self, job_id: str, wait_s: float = 0) -> Job:
        """The job now, or after up to ``wait_s`` seconds if it is not final yet."""
        params = {"wait": wait_s} if wait_s else {}
        return Job.from_json(self._request("GET", f"/v1/jobs/{job_id}", replayable=True,
                                           params=params, timeout=self.timeout_s + wait_s))

    def wait(self, job: str | Job, timeout_s: float = 60.0) -> Job:
        """Long-poll until the job is final or ``timeout_s`` passes (then the job as last
        read, not final)."""
        job_id = job.id if isinstance(job, Job) else job
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            current = self.job(job_id, wait_s=max(0.0, min(MAX_POLL_S, remaining)))
            if current.done or remaining <= 0:
                return current

    def run(self, image: ImageInput, task: str, options: dict[str, Any] | None = None,
            timeout_s: float = 60.0) -> Job:
        """Submit and wait: the finished job."""
        return self.wait(self.submit(image, task, options), timeout_s)

    def batch(self, images: Iterable[ImageInput] | str | Path, task: str,
              options: dict[str, Any] | None = None, *, wait: bool = False,
              timeout_s: float = 120.0, idempotency_key: str | None = None,
              progress: bool = False) -> list[Job]:
        """Queue several images in one request (``POST /v1/jobs/batch``, all or nothing,
        at most ``VISIONQ_MAX_BATCH``, 64 by default).  ``images``: paths or bytes, or a
        folder / glob.  ``wait``: return the finished jobs, in the same order;
        ``progress``: a progress line on stderr while waiting."""
        if isinstance(images, str | Path):
            images = image_files(images)
        datas = [read_image(image) for image in images]
        form = {"options": json.dumps(options)} if options else {}
        key = idempotency_key or uuid.uuid4().hex
        body = self._request(
            "POST", "/v1/jobs/batch", replayable=True, params={"task": task}, data=form,
            files=lambda: [(f"image{i}", (f"image{i}", d)) for i, d in enumerate(datas)],
            headers={"Idempotency-Key": key})
        jobs = [Job.from_json(item) for item in body["jobs"]]
        if not wait:
            return jobs
        bar = Progress(len(jobs), f"batch {task}") if progress else None
        deadline = time.monotonic() + timeout_s
        finished = []
        for job in jobs:
            done = self.wait(job, max(0.0, deadline - time.monotonic()))
            finished.append(done)
            if bar is not None:
                bar.update(done.succeeded)
        if bar is not None:
            bar.close()
        return finished

    # -- stream ------------------------------------------------------------------------

    def stream(self, images: Iterable[tuple[str, ImageInput]] | Iterable[Path] | str | Path,
               task: str, options: dict[str, Any] | None = None, *,
               window: int | None = None, idempotent: bool = False, progress: bool = False,
               timeout_s: float = 120.0) -> Iterator[StreamResult]:
        """Send many images over one WebSocket and yield each result as it finishes
        (completion order).  ``images``: a folder or glob (each file's path is its
        ``ref``), paths, or ``(ref, image)`` pairs.  ``window``: images in flight at most;
        ``idempotent``: refs are idempotency keys (a resent ref is the same job);
        ``progress``: a progress line on stderr."""
        if isinstance(images, str | Path):
            images = image_files(images)
        total = len(images) if hasattr(images, "__len__") else None
        items = ((str(i), i) if isinstance(i, Path) else i for i in images)
        bar = Progress(total, f"stream {task}") if progress else None
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        try:
            for frame in stream_frames(ws_url(self.base_url), items, task, options,
                                       window=window, headers=headers, timeout_s=timeout_s,
                                       idempotent=idempotent):
                result = StreamResult.from_json(frame)
                if bar is not None:
                    bar.update(result.succeeded)
                yield result
        finally:
            if bar is not None:
                bar.close()

    # -- DeepStack-compatible endpoints (/v1/vision/*) ---------------------------------

    def _vision(self, path: str, images: dict[str, bytes] | list[tuple[str, bytes]],
                form: dict[str, Any] | None = None) -> dict[str, Any]:
        """These endpoints take no Idempotency-Key: only a request that never connected,
        or a 503 (refused before any work), is repeated."""
        pairs = list(images.items()) if isinstance(images, dict) else images
        return self._request("POST", f"/v1/vision/{path}", replayable=False,
                             files=lambda: [(name, (name, data)) for name, data in pairs],
                             data={k: str(v) for k, v in (form or {}).items() if v is not None},
                             timeout=self.timeout_s + 60)

    def detect(self, image: ImageInput, min_confidence: float | None = None,
               ) -> list[ObjectPrediction]:
        """COCO objects, best first (``min_confidence`` default 0.4, floor 0.1)."""
        body = self._vision("detection", {"image": read_image(image)},
                            {"min_confidence": min_confidence})
        return [ObjectPrediction.from_json(p) for p in body.get("predictions", [])]

    def detect_faces(self, image: ImageInput, min_confidence: float | None = None,
                     ) -> list[FacePrediction]:
        body = self._vision("face", {"image": read_image(image)},
                            {"min_confidence": min_confidence})
        return [FacePrediction.from_json(p) for p in body.get("predictions", [])]

    def recognize(self, image: ImageInput, min_confidence: float | None = None,
                  ) -> list[FaceMatch]:
        """Each face and who it is (``unknown`` below ``min_confidence``, default 0.67)."""
        body = self._vision("face/recognize", {"image": read_image(image)},
                            {"min_confidence": min_confidence})
        return [FaceMatch.from_json(p) for p in body.get("predictions", [])]

    def register(self, userid: str, *images: ImageInput, append: bool = False) -> Registration:
        """Enrol ``userid`` from one or more photos (the largest face of each); replaces
        the faces held for ``userid`` unless ``append``."""
        files = [(f"image{i}", read_image(image)) for i, image in enumerate(images)]
        body = self._vision("face/register", files,
                            {"userid": userid, "append": "true" if append else None})
        return Registration.from_json(body)

    def list_faces(self) -> list[str]:
        body = self._request("POST", "/v1/vision/face/list", replayable=True)
        return list(body.get("faces", []))

    def delete_face(self, userid: str) -> bool:
        """True when ``userid`` was registered (deleting an unknown one is no error)."""
        body = self._request("POST", "/v1/vision/face/delete", replayable=True,
                             data={"userid": userid})
        return bool(body.get("deleted"))

    def match_faces(self, first: ImageInput, second: ImageInput) -> float | None:
        """Similarity 0..1 of the largest faces of two photos; None when one has none."""
        body = self._vision("face/match", [("image1", read_image(first)),
                                           ("image2", read_image(second))])
        return float(body["similarity"]) if body.get("success") else None

    def classify(self, image: ImageInput, top_k: int | None = None,
                 min_confidence: float | None = None) -> list[Label]:
        """ImageNet labels, best first (visionq's extension; DeepStack has none)."""
        body = self._vision("classify", {"image": read_image(image)},
                            {"top_k": top_k, "min_confidence": min_confidence})
        return [Label.from_json(p) for p in body.get("predictions", [])]
