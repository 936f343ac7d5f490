"""``/v1/stream``: many images over one WebSocket, with credit-based flow control.

The protocol is in ``visionq.stream_protocol`` (and ``api/stream.schema.json``).  Every
image becomes a normal job through ``api.submission.submit_jobs`` (same validation, queues,
records, idempotency, metrics); results are announced by the process's one pub/sub
listener (``visionq.wakeup.DoneListener``), not a connection per job.

Served by the same Flask app under gunicorn's threaded workers with ``simple-websocket``
(flask-sock's engine; flask-sock is not used: its routes run behind the app's
``before_request`` key check, which would refuse a browser's upgrade before the ``{"auth"}``
frame could be read).  ``StreamMiddleware`` wraps ``app.wsgi_app`` and takes
``/v1/stream`` before Flask's request hooks; it authenticates with ``api.security``'s own
functions, from the upgrade request's headers or from the first frame.

Each open stream holds one gunicorn thread (plus simple-websocket's reader thread) for its
lifetime: ``VISIONQ_MAX_STREAMS`` per process must stay below the threads per process.  So
every upgrade takes a slot of ``StreamGate`` before anything else, authenticated or not (a
keyless upgrade must send its key within ``VISIONQ_STREAM_AUTH_TIMEOUT_S``; its slot then
passes to its key), and every send is bounded by ``VISIONQ_STREAM_SEND_TIMEOUT_S`` (a client
that stops reading cannot hold the thread in a blocked send).

One thread serves a connection: it sleeps on simple-websocket's input event, which the
reader thread sets for each frame and the listener sets (through ``_Chained``) when one of
the connection's jobs finishes, so there is no polling and no second sender.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, Response, current_app, request
from simple_websocket import ConnectionClosed, Server

from api.errors import ApiError, error_response
from api.security import Caller, authenticate, check_host_and_origin, rate_limit
from api.services import Services, services
from api.submission import submit_jobs
from visionq.imaging import ImageError
from visionq.job_json import job_json
from visionq.jobs import FINAL_STATUSES
from visionq.stream_protocol import (
    CLOSE_CREDIT_EXCEEDED,
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_MALFORMED,
    CLOSE_REASONS,
    CLOSE_TOO_MANY_STREAMS,
    CLOSE_UNAUTHORIZED,
    STREAM_PATH,
    ImageHeader,
    ProtocolError,
    parse_header,
    parse_json_frame,
)
from visionq.wakeup import DoneListener

log = logging.getLogger("visionq.api.stream")

FRAME_OVERHEAD_BYTES = 64 * 1024
RECEIVE_BYTES = 64 * 1024
"""simple-websocket's socket read size (its default, 4 KiB, costs a read per 4 KiB)."""
RECHECK_S = 1.0
"""Pending jobs are re-read this often even without an announcement (a lost one)."""
UNSUBSCRIBED_RECHECK_S = 0.1
BLOCKED_RECHECK_S = 0.25
"""While a queue is full: how often held images are retried and credits reconsidered."""
STREAM_GATE_KEY = "visionq_stream_gate"
MAX_CLOSE_REASON_BYTES = 123
"""The WebSocket limit on a close frame's reason."""


UNAUTHENTICATED = "unauthenticated:"
"""Prefix of the gate's name for a connection still waiting for its key frame."""


class StreamGate:
    """Open streams in this process, in total and per caller (``Caller.who``); connections
    not yet authenticated (``UNAUTHENTICATED`` + an id) hold at most half the slots, so
    keyless clients reconnecting in a loop cannot keep keyed ones out."""

    def __init__(self, max_total: int, max_per_key: int) -> None:
        self.max_total, self.max_per_key = max_total, max_per_key
        self.max_unauthenticated = max(1, max_total // 2)
        self._lock = threading.Lock()
        self._by_key: dict[str, int] = {}

    @property
    def open(self) -> int:
        with self._lock:
            return sum(self._by_key.values())

    def acquire(self, who: str) -> bool:
        with self._lock:
            if sum(self._by_key.values()) >= self.max_total:
                return False
            if self._by_key.get(who, 0) >= self.max_per_key:
                return False
            if who.startswith(UNAUTHENTICATED) and sum(
                    n for key, n in self._by_key.items()
                    if key.startswith(UNAUTHENTICATED)) >= self.max_unauthenticated:
                return False
            self._by_key[who] = self._by_key.get(who, 0) + 1
            return True

    def pass_on(self, holder: str, who: str) -> bool:
        """Give ``holder``'s slot to ``who`` (a connection that just authenticated), unless
        ``who`` already has ``max_per_key``; ``holder`` keeps it then."""
        with self._lock:
            if self._by_key.get(who, 0) >= self.max_per_key:
                return False
            self._by_key[who] = self._by_key.get(who, 0) + 1
            self._drop(holder)
            return True

    def release(self, who: str) -> None:
        with self._lock:
            self._drop(who)

    def _drop(self, who: str) -> None:
        left = self._by_key.get(who, 0) - 1
        if left > 0:
            self._by_key[who] = left
        else:
            self._by_key.pop(who, None)


class _Chained(threading.Event):
    """The connection's job bell: setting it also wakes the connection's thread."""

    def __init__(self, also: threading.Event) -> None:
        super().__init__()
        self._also = also

    def set(self) -> None:
        super().set()
        self._also.set()


class _Close(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class _Held:
    header: ImageHeader
    data: bytes


def _caller_for_key(key: str) -> Caller:
    """``api.security.authenticate`` on a key that came in a frame, not a header."""
    context = current_app.test_request_context(
        STREAM_PATH, headers={"Authorization": f"Bearer {key}"},
        environ_base={"REMOTE_ADDR": request.remote_addr or ""})
    with context:
        return authenticate()


def _listener(svc: Services) -> DoneListener | None:
    return svc.jobs.listener  # the process's one listener (api.services)


class StreamSession:
    """One connection: read frames, admit images, send results in completion order."""

    def __init__(self, ws: Server, svc: Services, caller: Caller | None,
                 gate: Callable[[str], bool]) -> None:
        """``gate(who)`` moves the connection's stream slot to the key it authenticated
        with by its first frame (``False``: that key has too many streams)."""
        self.ws, self.svc, self.caller, self._gate = ws, svc, caller, gate
        self.window = svc.settings.stream_window
        self.credits = 0
        self.owed = 0
        self.pending: dict[str, list[str | None]] = {}
        """Accepted jobs not yet answered: id -> the refs sent for it (an idempotent ref
        sent twice is one job answered twice)."""
        self.held: deque[_Held] = deque()
        self.expecting: ImageHeader | None = None
        self.received_image = False
        """An image was received: a key frame is only allowed before the first."""
        self.tasks: set[str] = set()
        self.saw_full = False
        """A queue of this stream's was full: check the backlogs before granting credits."""
        self.bell = _Chained(ws.event)
        self.last_frame = time.monotonic()
        self.last_recheck = time.monotonic()

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        listener = _listener(self.svc)
        try:
            if self.caller is not None:
                self._grant(self.window)
            while self.ws.connected or self.ws.input_buffer:
                self.ws.event.wait(self._timeout(listener))
                self.ws.event.clear()
                while self.ws.input_buffer:
                    self._on_frame(self.ws.input_buffer.pop(0))
                now = time.monotonic()
                if self.pending and (self.bell.is_set() or now - self.last_recheck >= (
                        RECHECK_S if listener is None or listener.ready
                        else UNSUBSCRIBED_RECHECK_S)):
                    self.bell.clear()
                    self.last_recheck = now
                    self._collect()
                if self.held:
                    self._retry_held()
                if self.owed and not self.held:
                    self._grant_owed()
                self._check_idle()
        except _Close as close:
            self._close(close.code, close.message)
        except BlockingIOError:  # a send timed out (``bound_sends``): it stopped reading
            self._abandon()
        except (ConnectionClosed, OSError):
            pass  # the client went away (its accepted jobs run on)
        except Exception:
            log.exception("stream failed")
            self._close(CLOSE_INTERNAL, "internal error; see the API log")
        finally:
            if listener is not None:
                for job_id in self.pending:
                    listener.unregister(job_id, self.bell)

    def _timeout(self, listener: DoneListener | None) -> float:
        """At most ``RECHECK_S``: simple-websocket sets the event before it marks a
        connection closed for a frame too big, so a wake-up can find it still open."""
        if self.held or self.owed:
            return BLOCKED_RECHECK_S
        if self.pending and listener is not None and not listener.ready:
            return UNSUBSCRIBED_RECHECK_S
        settings = self.svc.settings
        idle = (settings.stream_auth_timeout_s if self.caller is None
                else settings.stream_idle_timeout_s)
        return min(RECHECK_S, max(0.01, idle - (time.monotonic() - self.last_frame)))

    def _check_idle(self) -> None:
        auth_timeout = self.svc.settings.stream_auth_timeout_s
        if self.caller is None and time.monotonic() - self.last_frame >= auth_timeout:
            raise _Close(CLOSE_UNAUTHORIZED, f"no API key within {auth_timeout:g} s: send it "
                         'in the upgrade request\'s headers or as the first frame '
                         '{"auth": key}')
        if self.pending or self.held or self.expecting is not None:
            return
        idle = self.svc.settings.stream_idle_timeout_s
        if time.monotonic() - self.last_frame >= idle:
            raise _Close(CLOSE_IDLE, f"idle for {idle:g} s")

    # -- frames in -----------------------------------------------------------------------
    def _on_frame(self, frame: str | bytes) -> None:
        self.last_frame = time.monotonic()
        try:
            if self.caller is None:
                self._on_auth(frame)
            elif isinstance(frame, bytes):
                if self.expecting is None:
                    raise ProtocolError("binary frame without a header frame before it")
                header, self.expecting = self.expecting, None
                self.received_image = True
                self._on_image(header, frame)
            else:
                if self.expecting is not None:
                    raise ProtocolError("text frame where the image (binary) was expected")
                fields = parse_json_frame(frame)
                if set(fields) == {"auth"} and not self.received_image:
                    return  # a key frame on a stream its headers authenticated (or an open API)
                header = parse_header(fields)
                if self.credits <= 0:
                    raise _Close(CLOSE_CREDIT_EXCEEDED, f"image sent without credit (window "
                                 f"{self.window}): wait for a credit frame")
                self.credits -= 1
                self.expecting = header
        except ProtocolError as exc:
            raise _Close(CLOSE_MALFORMED, str(exc)) from None

    def _on_auth(self, frame: str | bytes) -> None:
        key = parse_json_frame(frame).get("auth") if isinstance(frame, str) else None
        if not isinstance(key, str) or not key:
            raise _Close(CLOSE_UNAUTHORIZED, 'an API key is required: send it in the '
                         'upgrade request\'s headers or as the first frame {"auth": key}')
        try:
            caller = _caller_for_key(key)
        except ApiError as exc:
            raise _Close(CLOSE_UNAUTHORIZED, exc.message) from None
        if not self._gate(caller.who):
            raise _Close(CLOSE_TOO_MANY_STREAMS, "too many streams open for this key")
        self.caller = caller
        self._grant(self.window)

    def _on_image(self, header: ImageHeader, data: bytes) -> None:
        try:
            rate_limit(self._authenticated())
            self._admit(header, data)
        except ApiError as exc:
            if exc.code == "queue_full":
                self.held.append(_Held(header, data))  # backpressure: fewer credits
                self.saw_full = True
                return
            self._reject(header, exc.status, exc.code, exc.message)
        except ImageError as exc:
            self._reject(header, exc.status, exc.code, exc.message)
        except (redis.ConnectionError, redis.TimeoutError):
            self._reject(header, 503, "redis_unavailable",
                         "the queue (Redis) is unavailable; retry shortly")

    def _authenticated(self) -> Caller:
        if self.caller is None:  # images are read only after the key (``_on_text``)
            raise RuntimeError("an image frame on a stream with no caller")
        return self.caller

    def _admit(self, header: ImageHeader, data: bytes) -> None:
        caller = self._authenticated()
        done = submit_jobs(header.task, [data], header.options,
                           idempotency_key=header.ref if header.idempotent else None,
                           owner=caller.who, callback_url=header.callback_url)
        job = done.jobs[0]
        self.tasks.add(job.task)
        self.pending.setdefault(job.id, []).append(header.ref)
        listener = _listener(self.svc)
        if listener is not None:
            listener.register(job.id, self.bell)
        self.bell.set()  # read it once after registering: a finish before now is seen
        self._send({"ref": header.ref, "id": job.id, "status": "queued"})

    def _reject(self, header: ImageHeader, status: int, code: str, message: str) -> None:
        self._send({"ref": header.ref, "id": None, "status": "rejected", "error": message,
                    "code": code, "http_status": status})
        self.owed += 1

    def _retry_held(self) -> None:
        while self.held:
            item = self.held[0]
            try:
                self._admit(item.header, item.data)
            except ApiError as exc:
                if exc.code == "queue_full":
                    return
                self._reject(item.header, exc.status, exc.code, exc.message)
            except (redis.ConnectionError, redis.TimeoutError):
                return
            self.held.popleft()

    # -- results out ---------------------------------------------------------------------
    def _collect(self) -> None:
        ids = list(self.pending)
        try:
            statuses = self.svc.jobs.statuses(ids)  # each on its job's Redis (visionq.shards)
        except (redis.ConnectionError, redis.TimeoutError):
            return  # Redis restarting: the next recheck tries again
        listener = _listener(self.svc)
        for job_id, raw in zip(ids, statuses, strict=True):
            if raw is not None and raw.decode() not in FINAL_STATUSES:
                continue
            job = self.svc.jobs.get(job_id) if raw is not None else None
            refs = self.pending.pop(job_id)
            if listener is not None:
                listener.unregister(job_id, self.bell)
            for ref in refs:
                if job is None:
                    self._send({"ref": ref, "id": job_id, "status": "failed", "result": None,
                                "error": "the job record expired", "code": "job_not_found"})
                else:
                    self._send({"ref": ref, **job_json(job)})
                self.owed += 1

    def _grant_owed(self) -> None:
        if self.saw_full:  # credits come back only once the queue has room again
            if self._queues_full():
                return
            self.saw_full = False
        owed, self.owed = self.owed, 0
        self._grant(owed)

    def _queues_full(self) -> bool:
        if not self.tasks:
            return False
        tasks = sorted(self.tasks)
        try:
            lengths = self.svc.queue_lengths(tasks)
        except (redis.ConnectionError, redis.TimeoutError):
            return True
        return any(int(length) >= self.svc.settings.max_backlog_for(task)
                   for task, length in zip(tasks, lengths, strict=True))

    def _grant(self, n: int) -> None:
        self.credits += n
        self._send({"credit": n})

    def _send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame))

    def _close(self, code: int, message: str) -> None:
        reason = f"{CLOSE_REASONS.get(code, 'closed')}: {message}"
        reason = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
        try:
            self.ws.close(reason=code, message=reason)
        except BlockingIOError:  # the close frame's send timed out: it stopped reading
            self._abandon()
        except (ConnectionClosed, OSError):
            pass  # already closed, or the client went away

    def _abandon(self) -> None:
        """Drop a connection whose client stopped reading: also wakes simple-websocket's
        reader thread (blocked in ``recv`` until the client would send or close)."""
        log.info("stream dropped: the client did not read for %g s",
                 self.svc.settings.stream_send_timeout_s)
        self.ws.connected = False
        with contextlib.suppress(OSError):
            self.ws.sock.shutdown(socket.SHUT_RDWR)


class StreamMiddleware:
    """Serves ``/v1/stream`` before Flask's hooks; everything else goes to the app."""

    def __init__(self, app: Flask) -> None:
        self.app, self.wsgi_app = app, app.wsgi_app
        settings = app.extensions["visionq"].settings
        self.gate = StreamGate(settings.max_streams, settings.max_streams_per_key)
        app.extensions[STREAM_GATE_KEY] = self.gate

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != STREAM_PATH:
            return self.wsgi_app(environ, start_response)
        with self.app.request_context(environ):
            response = self._serve(environ)
            if response is not None:
                return response(environ, start_response)
        if "gunicorn.socket" in environ:
            raise StopIteration()  # gunicorn: the socket is done with (as flask-sock does)
        return []

    def _serve(self, environ: dict[str, Any]) -> Response | None:
        """A JSON error response before the upgrade, or ``None`` after the stream ends."""
        svc = services()
        if svc.settings.max_streams <= 0:
            return error_response(404, "streaming_disabled",
                                  "streaming is off on this server (VISIONQ_MAX_STREAMS=0)")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return error_response(426, "websocket_required",
                                  f"{STREAM_PATH} is a WebSocket endpoint (Upgrade: websocket)",
                                  {"Upgrade": "websocket"})
        try:
            check_host_and_origin()  # a page on another site must not drive a stream
            caller: Caller | None = authenticate()
        except ApiError as exc:
            if exc.code != "missing_api_key":
                return error_response(exc.status, exc.code, exc.message, exc.headers)
            caller = None  # the browser's way: the key comes in the first frame
        try:
            if caller is not None:
                rate_limit(caller)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        # Every upgrade holds a slot from here on, a keyless one under a name of its own
        # until its first frame names its key (``gate``).
        holder = [caller.who if caller is not None else f"{UNAUTHENTICATED}{id(environ)}"]
        if not self.gate.acquire(holder[0]):
            return error_response(503, "too_many_streams",
                                  f"too many streams open (at most {self.gate.max_total} per "
                                  f"API process, {self.gate.max_per_key} per key)",
                                  {"Retry-After": "10"})

        def gate(key: str) -> bool:
            if self.gate.pass_on(holder[0], key):
                holder[0] = key
                return True
            return False

        max_frame = svc.settings.stream_max_frame_bytes or (
            svc.settings.max_bytes + FRAME_OVERHEAD_BYTES)
        try:
            bound_sends(environ, svc.settings.stream_send_timeout_s)
            ws = Server(environ, receive_bytes=RECEIVE_BYTES, max_message_size=max_frame)
            StreamSession(ws, svc, caller, gate).run()
        finally:
            self.gate.release(holder[0])
        return None


def bound_sends(environ: dict[str, Any], timeout_s: float) -> None:
    """Make every send on the connection's socket fail (``OSError``) after ``timeout_s``
    without progress, simple-websocket's own included (its reader thread answers pings
    and closes): a kernel send timeout (``SO_SNDTIMEO``), which leaves reads blocking."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        return
    seconds = int(timeout_s)
    microseconds = int((timeout_s - seconds) * 1_000_000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                    struct.pack("ll", seconds, microseconds))


def init_stream(app: Flask) -> None:
    """Serve ``/v1/stream`` on ``app`` (call after ``app.extensions["visionq"]`` is set)."""
    app.wsgi_app = StreamMiddleware(app)  # type: ignore[method-assign]
