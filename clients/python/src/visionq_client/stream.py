"""Many images over one WebSocket (``/v1/stream``), within the server's credits.

The protocol (the server's ``visionq/stream_protocol.py`` documents it): per image a
text frame ``{"task", "options"?, "ref"?, "idempotent"?}`` then one binary frame; the
server grants ``{"credit": n}`` and answers each image with ``queued`` and then a final
``succeeded``/``failed``/``rejected`` frame, in completion order."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from simple_websocket import Client as WebSocket
from simple_websocket import ConnectionClosed

from visionq_client.errors import StreamClosedError

STREAM_PATH = "/v1/stream"
FINAL_FRAME_STATUSES = frozenset({"succeeded", "failed", "rejected"})

ImageInput = bytes | str | Path


def read_image(image: ImageInput) -> bytes:
    return Path(image).read_bytes() if isinstance(image, str | Path) else image


def header_frame(task: str, options: dict[str, Any] | None = None, ref: str | None = None,
                 idempotent: bool = False) -> str:
    frame: dict[str, Any] = {"task": task}
    if options:
        frame["options"] = options
    if ref is not None:
        frame["ref"] = ref
    if idempotent:
        frame["idempotent"] = True
    return json.dumps(frame)


def is_final(frame: dict[str, Any]) -> bool:
    """A job's last frame: its result, its failure or its rejection."""
    return frame.get("status") in FINAL_FRAME_STATUSES


def ws_url(base_url: str) -> str:
    url = base_url.rstrip("/")
    if url.startswith("https://"):
        url = "wss://" + url[len("https://"):]
    elif url.startswith("http://"):
        url = "ws://" + url[len("http://"):]
    return url + STREAM_PATH


def connect_stream(url: str, headers: dict[str, str] | None = None) -> Any:
    """A ``simple_websocket.Client`` on ``url`` that also keeps the frames the server sent
    in the same packet as its handshake reply: the stock client leaves them in the
    protocol buffer until more bytes arrive (a first ``{"credit"}`` frame went unseen)."""
    class _Client(WebSocket):  # type: ignore[misc]
        def handshake(self) -> None:
            # A header frame and its image go out back to back: no Nagle delay between them.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handshake()
            self.connected = self._handle_events()  # before the reader thread starts

    return _Client.connect(url, headers=headers, receive_bytes=65536)


def stream_frames(url: str, images: Iterable[tuple[str, ImageInput]], task: str,
                  options: dict[str, Any] | None = None, *, window: int | None = None,
                  headers: dict[str, str] | None = None, timeout_s: float = 120.0,
                  idempotent: bool = False,
                  on_frame: Callable[[dict[str, Any]], None] | None = None,
                  ) -> Iterator[dict[str, Any]]:
    """Send every ``(ref, image)`` as credits allow (at most ``window`` in flight) and
    yield each image's final frame as it arrives; ``on_frame`` sees every frame (credits,
    ``queued`` acknowledgements with the job ids).  ``idempotent``: each ref is an
    idempotency key (the same ref again, same API key, is the same job)."""
    ws = connect_stream(url, headers)
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
                ws.send(header_frame(task, options, ref, idempotent))
                ws.send(read_image(image))
                credits -= 1
                in_flight += 1
            if exhausted and not in_flight:
                break
            raw = ws.receive(timeout=timeout_s)
            if raw is None:
                raise TimeoutError(f"no frame from the server in {timeout_s:g} s")
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
