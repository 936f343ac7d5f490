"""A small Python client for visionq's job API (used by ``visionq submit``) and its
WebSocket stream (``StreamClient``, used by ``visionq stream``)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import requests

from visionq.stream_protocol import STREAM_PATH, header_frame, is_final

DEFAULT_URL = "http://127.0.0.1:8000"


class VisionqError(RuntimeError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Client:
    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None,
                 timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s

    def _check(self, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200], "code": "not_json"}
        if response.status_code >= 400:
            raise VisionqError(response.status_code, body.get("code", "error"),
                               body.get("error", ""))
        return body

    def submit(self, image: bytes | str | Path, task: str,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
        data = Path(image).read_bytes() if isinstance(image, str | Path) else image
        form = {"options": json.dumps(options)} if options else {}
        response = self.session.post(f"{self.base_url}/v1/jobs", params={"task": task},
                                     files={"image": ("image", data)}, data=form,
                                     timeout=self.timeout_s)
        return self._check(response)

    def job(self, job_id: str, wait_s: float = 0) -> dict[str, Any]:
        params = {"wait": wait_s} if wait_s else {}
        response = self.session.get(f"{self.base_url}/v1/jobs/{job_id}", params=params,
                                    timeout=self.timeout_s + wait_s)
        return self._check(response)

    def wait(self, job_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            job = self.job(job_id, wait_s=max(0.0, min(10.0, remaining)))
            if job["status"] in ("succeeded", "failed") or remaining <= 0:
                return job

    def run(self, image: bytes | str | Path, task: str,
            options: dict[str, Any] | None = None, timeout_s: float = 60.0) -> dict[str, Any]:
        return self.wait(self.submit(image, task, options)["id"], timeout_s)


class StreamClosedError(RuntimeError):
    """The server closed a stream (``visionq.stream_protocol`` lists the codes)."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"stream closed ({code}): {reason or ''}")
        self.code, self.reason = code, reason


def connect_stream(url: str, headers: dict[str, str] | None = None) -> Any:
    """A ``simple_websocket.Client`` on ``url`` that also keeps the frames the server sent
    in the same packet as its handshake reply: the stock client leaves them in the
    protocol buffer until more bytes arrive (a first ``{"credit"}`` frame went unseen)."""
    from simple_websocket import Client as WebSocket

    class _Client(WebSocket):  # type: ignore[misc]
        def handshake(self) -> None:
            # A header frame and its image go out back to back: no Nagle delay between them.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handshake()
            self.connected = self._handle_events()  # before the reader thread starts

    return _Client.connect(url, headers=headers, receive_bytes=65536)


class StreamClient:
    """Many images over one WebSocket (``/v1/stream``), within the server's credits.

    ``run`` sends every ``(ref, image)`` and yields each image's last frame (its result,
    failure or rejection) as it arrives, in completion order; ``on_frame`` sees every
    frame (credits, ``queued`` acknowledgements with the job ids)."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None,
                 timeout_s: float = 120.0) -> None:
        url = base_url.rstrip("/")
        self.url = ("wss://" + url[8:] if url.startswith("https://") else
                    "ws://" + url[7:] if url.startswith("http://") else url) + STREAM_PATH
        self.api_key, self.timeout_s = api_key, timeout_s

    def run(self, images: Iterable[tuple[str, bytes | str | Path]], task: str,
            options: dict[str, Any] | None = None, window: int | None = None,
            on_frame: Callable[[dict[str, Any]], None] | None = None,
            ) -> Iterator[dict[str, Any]]:
        from simple_websocket import ConnectionClosed

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        ws = connect_stream(self.url, headers)
        source = iter(images)
        credits = in_flight = 0
        exhausted = False
        try:
            while not exhausted or in_flight:
                while credits > 0 and not exhausted and (window is None or in_flight < window):
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    ref, image = item
                    data = Path(image).read_bytes() if isinstance(image, str | Path) else image
                    ws.send(header_frame(task, options, ref))
                    ws.send(data)
                    credits -= 1
                    in_flight += 1
                if exhausted and not in_flight:
                    break
                raw = ws.receive(timeout=self.timeout_s)
                if raw is None:
                    raise TimeoutError(f"no frame from the server in {self.timeout_s:g} s")
                frame = json.loads(raw)
                if on_frame is not None:
                    on_frame(frame)
                if "credit" in frame:
                    credits += int(frame["credit"])
                elif is_final(frame):
                    in_flight -= 1
                    yield frame
        except ConnectionClosed:
            raise StreamClosedError(ws.close_reason, ws.close_message) from None
        finally:
            with contextlib.suppress(Exception):
                ws.close()
