"""One webhook attempt: resolve, check, connect to the checked address, POST, read the
status.

The connection goes to the address ``destinations.resolve`` approved (``Host``, TLS SNI and
certificate checks still use the URL's name), redirects are not followed (a 3xx is a failed
attempt), at most ``MAX_RESPONSE_BYTES`` of the answer are read, and the whole attempt is
bounded by ``timeout_s``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass

from visionq.callbacks.destinations import AllowList, DestinationError, IPAddress, resolve

MAX_RESPONSE_BYTES = 4096
"""Read of a receiver's answer (only its status matters; the rest is dropped)."""


@dataclass(frozen=True)
class Outcome:
    status: int | None = None
    """The HTTP status, ``None`` when no answer came."""
    error: str | None = None
    refused: bool = False
    """The destination is not allowed (not retried)."""

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((str(self._address), self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict[str, str], allow: AllowList,
         timeout_s: float) -> Outcome:
    deadline = time.monotonic() + timeout_s
    try:
        parts, addresses = resolve(url, allow)
    except DestinationError as exc:
        return Outcome(error=exc.message, refused=True)
    except OSError as exc:
        return Outcome(error=f"DNS: {exc}")
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    last_error = "no address"
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        kind = _PinnedHTTPS if https else _PinnedHTTP
        connection = kind(parts.hostname or "", port, address, remaining)
        try:
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            response.read(MAX_RESPONSE_BYTES)
            return Outcome(status=response.status)
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            connection.close()
    return Outcome(error=last_error)
