"""Has the HTTP client hung up?  A peek at the request's socket, without reading from it.

Frigate gives each detection 0.1 s and then drops the connection; a synchronous endpoint
that keeps waiting for a job nobody will read lets that job run anyway, so under overload
the backlog feeds itself and every later frame is late too.  ``gone(environ)`` tells a
waiter that the peer has closed its side (``recv`` with ``MSG_PEEK`` returns ``b""``), so
it can revoke the job while it is still queued.

Only gunicorn hands the socket over (``environ["gunicorn.socket"]``, as ``visionq up``
runs the API); elsewhere (the Flask test client, other servers, TLS sockets, which take no
flags) the answer is always "still there" and waiting behaves as before.
"""

from __future__ import annotations

import socket
from typing import Any

SOCKET_KEY = "gunicorn.socket"
POLL_S = 0.05
"""How often a synchronous waiter looks at the socket while its job is not final: a job
still queued this long after its caller left is revoked before any worker starts it."""


def gone(environ: dict[str, Any]) -> bool:
    """True when the request's peer has closed the connection (EOF waiting on its side)."""
    sock = environ.get(SOCKET_KEY)
    if not isinstance(sock, socket.socket):
        return False
    try:
        peeked = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read: the client is waiting for us
    except ValueError:
        return False  # a wrapped (TLS) socket takes no flags: cannot tell
    except OSError:
        return True  # reset by peer, or closed under us
    return peeked == b""
