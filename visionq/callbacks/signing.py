"""Webhook signatures and secrets.

A delivery carries ``X-Visionq-Timestamp`` (Unix seconds) and ``X-Visionq-Signature:
sha256=<hex>``, the HMAC-SHA256 of ``<timestamp>.<body>`` (the timestamp's ASCII digits, a
dot, the raw body bytes) keyed with the secret's UTF-8 bytes.  A receiver recomputes it,
compares in constant time and refuses a timestamp far from its clock (a replay); the
docs/webhooks.md has a verifier, run verbatim by the tests.

Secrets: a job submitted with an API key is signed with that key's own secret,
``HMAC-SHA256(base, "visionq-callback:" + <the key's fingerprint>)`` in hex, where ``base``
is ``VISIONQ_CALLBACK_SECRET`` or else the server secret (``visionq.secret``).  The key's
owner reads it from ``GET /v1/callbacks/secret``; one tenant cannot compute another's
without the base.  Everything else (an open API, the global ``VISIONQ_CALLBACK_URL``) is
signed with the global secret: ``VISIONQ_CALLBACK_SECRET`` itself, or else the same
derivation with ``"visionq-callback:global"``.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from visionq.secret import MIN_SECRET_CHARS, SecretError, server_secret
from visionq.settings import Settings

SIGNATURE_HEADER = "X-Visionq-Signature"
TIMESTAMP_HEADER = "X-Visionq-Timestamp"
DELIVERY_HEADER = "X-Visionq-Delivery"
"""``<job id>:job`` or ``<job id>:global``: the same on every retry (receivers dedupe on it)."""
EVENT_HEADER = "X-Visionq-Event"
EVENT = "job.finished"
TOLERANCE_S = 300
"""What the documented verifier accepts between the timestamp and the receiver's clock."""
GLOBAL = "global"


class CallbackSecrets:
    """The signing secrets of one deployment (every API host and sender must agree: the
    same ``VISIONQ_CALLBACK_SECRET``, or the same ``VISIONQ_SECRET_KEY``)."""

    def __init__(self, configured: str, server: bytes) -> None:
        if configured and len(configured) < MIN_SECRET_CHARS:
            raise SecretError(f"VISIONQ_CALLBACK_SECRET must be at least {MIN_SECRET_CHARS} "
                              f"characters (got {len(configured)})")
        self._configured = configured
        self._base = configured.encode() if configured else server

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackSecrets:
        return cls(settings.callback_secret,
                   server_secret(settings.secret_key, Path(settings.state_dir)))

    def _derive(self, name: str) -> str:
        return hmac.new(self._base, f"visionq-callback:{name}".encode(),
                        hashlib.sha256).hexdigest()

    @property
    def global_secret(self) -> str:
        return self._configured or self._derive(GLOBAL)

    def for_submitter(self, submitter: str | None) -> str:
        """The secret of a job's callback: its API key's (submitter ``key:...``), else the
        global one."""
        if submitter and submitter.startswith("key:"):
            return self._derive(submitter)
        return self.global_secret


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def headers(secret: str, timestamp: int, body: bytes, delivery: str) -> dict[str, str]:
    return {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(secret, timestamp, body), DELIVERY_HEADER: delivery,
            EVENT_HEADER: EVENT, "User-Agent": "visionq-callbacks"}
