"""A minimal asyncio HTTP/1.1 client, one connection per request (gunicorn's sync workers
close after every response anyway): it costs a fraction of the ~1 ms of CPU per call of
``requests``, so the load generator sharing the cores measures the server, not itself.
Timeouts cover the whole exchange (connect, send, response), like a real client's.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class HttpError(Exception):
    """A transport failure; ``kind`` names it for the error tally."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80)


def multipart(image: bytes, filename: str = "image.jpg") -> tuple[bytes, str]:
    """(body, content type) of a form with one file field, ``image``."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n')
    return (head.encode() + image + f"\r\n--{boundary}--\r\n".encode(),
            f"multipart/form-data; boundary={boundary}")


async def request(target: Target, method: str, path: str, *, body: bytes = b"",
                  headers: dict[str, str] | None = None, timeout_s: float = 30) -> Response:
    try:
        return await asyncio.wait_for(_exchange(target, method, path, body, headers or {}),
                                      timeout_s)
    except TimeoutError as exc:
        raise HttpError("timeout", f"{method} {path} > {timeout_s:g} s") from exc
    except ConnectionRefusedError as exc:
        raise HttpError("connection_refused") from exc
    except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
        raise HttpError("connection_error", type(exc).__name__) from exc


async def _exchange(target: Target, method: str, path: str, body: bytes,
                    headers: dict[str, str]) -> Response:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: {target.host}:{target.port}",
                "Connection: close", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        response_headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            response_headers[name.strip().lower()] = value.strip()
        if "content-length" in response_headers:
            payload = await reader.readexactly(int(response_headers["content-length"]))
        else:
            payload = await reader.read()
        return Response(status, response_headers, payload)
    finally:
        writer.close()
