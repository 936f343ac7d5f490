"""A small HTTP proxy in front of the live API that misbehaves on purpose for its first
requests, as a load balancer or a flaky network does: ``lose`` forwards the request and
then drops the connection without an answer (the job exists, the client never hears of
it); ``busy`` answers 503 with ``Retry-After`` itself.  Every request's headers are kept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

HOP_HEADERS = {"host", "connection", "keep-alive", "transfer-encoding", "content-length"}


class Proxy:
    def __init__(self, upstream: str, mode: str, times: int = 1) -> None:
        self.upstream, self.mode, self.left = upstream, mode, times
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.url = ""

    def _misbehave(self) -> bool:
        with self.lock:
            if self.left > 0:
                self.left -= 1
                return True
            return False

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                proxy.seen.append((self.command, self.path, headers))
                misbehave = proxy._misbehave()
                if misbehave and proxy.mode == "busy":
                    payload = b'{"error": "busy", "code": "queue_full"}'
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                answer = requests.request(self.command, proxy.upstream + self.path, data=body,
                                          headers=headers, timeout=120)
                if misbehave and proxy.mode == "lose":
                    self.close_connection = True  # the answer is lost on the way back
                    return
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in HOP_HEADERS:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward

        return Handler


@contextmanager
def running(upstream: str, mode: str, times: int = 1) -> Iterator[Proxy]:
    proxy = Proxy(upstream, mode, times)
    server = ThreadingHTTPServer(("127.0.0.1", 0), proxy.handler())
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
