"""The Python client, now the separate package ``visionq-client`` (``clients/python``,
module ``visionq_client``): this module keeps the names the server's tools and tests
import.  ``StreamClient.run`` yields the stream's final frames as plain dicts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from visionq_client import DEFAULT_URL, Client, StreamClosedError, VisionqError, connect_stream
from visionq_client.stream import stream_frames, ws_url

__all__ = ["DEFAULT_URL", "Client", "StreamClient", "StreamClosedError", "VisionqError",
           "connect_stream"]


class StreamClient:
    """Many images over one WebSocket (``/v1/stream``), within the server's credits:
    ``visionq_client.stream.stream_frames`` with a base URL and key."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None,
                 timeout_s: float = 120.0) -> None:
        self.url = ws_url(base_url)
        self.api_key, self.timeout_s = api_key, timeout_s

    def run(self, images: Iterable[tuple[str, bytes | str | Path]], task: str,
            options: dict[str, Any] | None = None, window: int | None = None,
            on_frame: Callable[[dict[str, Any]], None] | None = None,
            ) -> Iterator[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        return stream_frames(self.url, images, task, options, window=window, headers=headers,
                             timeout_s=self.timeout_s, on_frame=on_frame)
