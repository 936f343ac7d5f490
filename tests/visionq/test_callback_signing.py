"""Webhook signatures (``visionq.callbacks.signing``) checked by the docs' verifier, taken
from docs/webhooks.md and run verbatim; per-key secrets differ per tenant."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from visionq.callbacks.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackSecrets,
    headers,
    signature,
)
from visionq.secret import SecretError

WEBHOOKS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SERVER = b"0123456789abcdef0123456789abcdef"


def readme_verifier() -> Callable[..., bool]:
    """``verify`` from the first Python block of docs/webhooks.md."""
    text = WEBHOOKS_PAGE.read_text()
    assert text.startswith("# Webhooks\n")
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None, "no Python verifier in docs/webhooks.md"
    assert len(code.group(1).strip().splitlines()) <= 12, "the verifier should stay short"
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "docs/webhooks.md", "exec"), namespace)  # noqa: S102
    return namespace["verify"]  # type: ignore[return-value]


def test_the_readme_verifier_accepts_a_signed_body_and_nothing_else() -> None:
    verify = readme_verifier()
    secret = CallbackSecrets("", SERVER).for_submitter("key:0123456789abcdef")
    body = b'{"id":"j1","status":"succeeded"}'
    now = int(time.time())
    signed = headers(secret, now, body, "j1:job")
    assert verify(secret, signed, body)
    assert not verify(secret, signed, body + b" ")  # body changed
    assert not verify("another secret", signed, body)  # wrong secret
    assert not verify(secret, {**signed, TIMESTAMP_HEADER: str(now + 1)}, body)  # ts changed
    stale = now - 301
    assert not verify(secret, headers(secret, stale, body, "j1:job"), body)  # a replay
    assert not verify(secret, {TIMESTAMP_HEADER: str(now)}, body)  # no signature
    assert not verify(secret, {SIGNATURE_HEADER: signed[SIGNATURE_HEADER]}, body)


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"s" * 16, b"1700000000.{}", hashlib.sha256).hexdigest()
    assert signature("s" * 16, 1700000000, b"{}") == f"sha256={expected}"


def test_each_key_has_its_own_secret_and_the_global_one_is_apart() -> None:
    secrets = CallbackSecrets("", SERVER)
    alice, bob = secrets.for_submitter("key:aaaa"), secrets.for_submitter("key:bbbb")
    assert alice != bob
    assert secrets.global_secret not in (alice, bob)
    assert secrets.for_submitter("ip:127.0.0.1") == secrets.global_secret
    assert secrets.for_submitter(None) == secrets.global_secret
    # another deployment (server secret) gives other secrets
    assert CallbackSecrets("", b"f" * 32).for_submitter("key:aaaa") != alice


def test_a_configured_secret_is_the_global_one_and_the_base_of_the_keys() -> None:
    secrets = CallbackSecrets("a-configured-secret", SERVER)
    assert secrets.global_secret == "a-configured-secret"
    assert secrets.for_submitter("key:aaaa") != CallbackSecrets("", SERVER).for_submitter(
        "key:aaaa")
    with pytest.raises(SecretError):
        CallbackSecrets("short", SERVER)
