"""API keys, admin-only routes and the per-key rate limit, as one ``before_request`` hook.

- Keys come from ``VISIONQ_API_KEYS`` and ``VISIONQ_ADMIN_KEYS`` (admin keys are API keys
  too).  With no key configured the API is open (it binds to 127.0.0.1 by default and
  ``visionq up`` refuses other addresses without keys).
- A key is read from ``Authorization: Bearer <key>``, ``X-API-Key: <key>`` or DeepStack's
  ``api_key`` and ``admin_key`` form fields, and compared with every configured key in
  constant time (``hmac.compare_digest``), so timing reveals neither the key nor which one
  matched.  Every key presented must be valid; the caller is an admin if one of them is an
  admin key (DeepStack clients send ``api_key`` and ``admin_key`` side by side).
- Admin-only endpoints (job revoke, face backup/restore) need an admin key whenever
  ``VISIONQ_ADMIN_KEYS`` is set; otherwise they follow the API key rule.  Face
  register/delete need only an API key, as in DeepStack (its server puts them behind
  ``CheckApiKey`` only), so Home Assistant's teach-face works with the key it has.
- The rate limit is a fixed window per key (per client address when the API is open) in
  Redis: ``INCR`` + ``EXPIRE`` on ``visionq:rate:<who>:<window>``, shared by every API
  process; over the limit is a 429 with ``Retry-After`` (seconds to the next window).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from flask import Flask, g, request

from api.errors import ApiError
from api.services import services
from visionq.keys import RATE_KEY_PREFIX

PUBLIC_PREFIXES = ("/healthz", "/readyz", "/openapi.json", "/docs", "/static/", "/metrics")
PUBLIC_PATHS = frozenset({"/", "/favicon.ico"})
ADMIN_ENDPOINTS = frozenset({"jobs.revoke_job", "backup.backup", "backup.restore"})


@dataclass(frozen=True)
class Caller:
    who: str
    """A stable, non-secret name for the key (sha256 prefix) or ``ip:<address>``."""
    admin: bool


def _presented_keys() -> list[str]:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return [header[7:].strip()] if header[7:].strip() else []
    if request.headers.get("X-API-Key"):
        return [request.headers["X-API-Key"].strip()]
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return [key for key in (request.form.get("api_key"), request.form.get("admin_key"))
                if key]
    return []


def _matches(presented: str, keys: list[str]) -> bool:
    found = False
    for key in keys:  # no early exit: the time taken does not depend on which key matched
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


def _fingerprint(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def authenticate() -> Caller:
    settings = services().settings
    api_keys, admin_keys = settings.api_key_list, settings.admin_key_list
    presented = _presented_keys()
    if not api_keys and not admin_keys:
        return Caller(f"ip:{request.remote_addr}", admin=True)
    unauthorized = {"WWW-Authenticate": 'Bearer realm="visionq"'}
    if not presented:
        raise ApiError(401, "missing_api_key", "an API key is required: send "
                       "'Authorization: Bearer <key>', 'X-API-Key: <key>' or form field "
                       "api_key", unauthorized)
    admin = False
    for key in presented:
        is_admin = bool(admin_keys) and _matches(key, admin_keys)
        if not is_admin and not _matches(key, api_keys):
            raise ApiError(401, "invalid_api_key", "the API key is not valid", unauthorized)
        admin |= is_admin
    return Caller(_fingerprint(presented[0]), admin=admin or not admin_keys)


def rate_limit(caller: Caller) -> None:
    settings = services().settings
    if settings.rate_limit <= 0:
        return
    window = settings.rate_window_s
    now = time.time()
    slot = int(now // window)
    key = f"{RATE_KEY_PREFIX}{caller.who}:{slot}"
    pipe = services().redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, window + 1)
    count = pipe.execute()[0]
    if count > settings.rate_limit:
        retry_after = max(1, int((slot + 1) * window - now + 0.999))
        raise ApiError(429, "rate_limited",
                       f"rate limit of {settings.rate_limit} requests per {window} s exceeded; "
                       f"retry in {retry_after} s", {"Retry-After": str(retry_after)})


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def init_security(app: Flask) -> None:
    @app.before_request
    def _guard() -> None:
        if _is_public(request.path) or request.method == "OPTIONS":
            return
        caller = authenticate()
        if request.endpoint in ADMIN_ENDPOINTS and not caller.admin:
            raise ApiError(403, "admin_required", "this endpoint needs an admin key "
                           "(VISIONQ_ADMIN_KEYS)")
        rate_limit(caller)
        g.caller = caller


def current_caller() -> Caller:
    return g.get("caller") or Caller(f"ip:{request.remote_addr}", admin=False)
