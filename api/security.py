"""API keys, admin-only routes and the per-key rate limit, as one ``before_request`` hook.

- Keys come from ``VISIONQ_API_KEYS`` and ``VISIONQ_ADMIN_KEYS`` (admin keys are API keys
  too).  With no key configured the API is open (it binds to 127.0.0.1 by default and
  ``visionq up`` refuses other addresses without keys).
- A key is read from ``Authorization: Bearer <key>``, ``X-API-Key: <key>`` or DeepStack's
  ``api_key`` and ``admin_key`` form fields, and compared with every configured key in
  constant time (``hmac.compare_digest``), so timing reveals neither the key nor which one
  matched.  Every key presented must be valid; the caller is an admin if one of them is an
  admin key (DeepStack clients send ``api_key`` and ``admin_key`` side by side).
- Roles: admin-only endpoints (face backup/restore, custom model add/delete, revoking
  another caller's job) need an admin key, always: without ``VISIONQ_ADMIN_KEYS`` no
  caller is an admin and they answer 403 ``admin_key_required``.  Face
  register/recognize/delete/list need only an API key (none on an open API), as in
  DeepStack (its server puts them behind ``CheckApiKey`` only), so Home Assistant's
  teach-face works with the key it has.
- Tenants: a caller is named by an HMAC of its key with the server secret
  (``visionq.secret``), recorded as the submitter of its jobs; with keys configured a
  caller sees only the jobs it submitted (``Caller.owner_filter``), admins see all.  On an
  open API (no keys) every caller is one tenant.
- Before any of that, ``api.origin``'s checks: a ``Host`` outside the allowed names is a
  421 (DNS rebinding), a browser request from another origin a 403 (cross-site writes).
- The rate limit is a fixed window per key (per client address when the API is open) in
  Redis: ``INCR`` + ``EXPIRE`` on ``visionq:rate:<who>:<window>``, shared by every API
  process; over the limit is a 429 with ``Retry-After`` (seconds to the next window).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, request

from api.errors import ApiError
from api.origin import cross_origin_refusal, host_allowed, origin_listed
from api.services import services
from visionq.keys import RATE_KEY_PREFIX
from visionq.secret import server_secret
from visionq.settings import Settings, is_loopback

log = logging.getLogger("visionq.api")
SECRET_EXTENSION = "visionq_secret"  # noqa: S105 - a dict key's name, not a secret
"""Where the app keeps its server secret (``app.extensions``)."""
CORS_ALLOW_HEADERS = "Authorization, X-API-Key, Content-Type, Idempotency-Key"
CORS_EXPOSE_HEADERS = "Location, Retry-After, Idempotent-Replayed"
CORS_MAX_AGE_S = 600

PUBLIC_PREFIXES = ("/healthz", "/readyz", "/openapi.json", "/docs", "/static/", "/metrics")
PUBLIC_PATHS = frozenset({"/", "/favicon.ico"})
ADMIN_ENDPOINTS = frozenset({"backup.backup", "backup.restore", "custom.add_model",
                             "custom.delete_model"})
ADMIN_KEY_HELP = ("set VISIONQ_ADMIN_KEYS=<a long random key> on the server and send that key "
                  "as 'Authorization: Bearer <key>' (or 'X-API-Key', or DeepStack's "
                  "'admin_key' form field)")


@dataclass(frozen=True)
class Caller:
    who: str
    """A stable, non-secret name for the key (an HMAC prefix) or ``ip:<address>``."""
    admin: bool
    keyed: bool = True
    """False on an open API (no keys configured): every caller is one tenant."""

    @property
    def owner_filter(self) -> str | None:
        """The submitter this caller's job reads and listings are limited to, ``None``
        for all (an admin, or anyone on an open API)."""
        return None if self.admin or not self.keyed else self.who

    def sees(self, submitter: str | None) -> bool:
        return self.owner_filter is None or submitter == self.owner_filter


def admin_key_required(what: str) -> ApiError:
    return ApiError(403, "admin_key_required", f"{what} needs an admin key: {ADMIN_KEY_HELP}")


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


def fingerprint(secret: bytes, key: str) -> str:
    """The name of a key in job records, history rows and rate counters: an HMAC with the
    server secret, so a leaked name cannot be checked against guessed keys offline."""
    return "key:" + hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()[:16]


def authenticate() -> Caller:
    settings = services().settings
    api_keys, admin_keys = settings.api_key_list, settings.admin_key_list
    presented = _presented_keys()
    if not api_keys and not admin_keys:
        return Caller(f"ip:{request.remote_addr}", admin=False, keyed=False)
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
    secret = current_app.extensions[SECRET_EXTENSION]
    return Caller(fingerprint(secret, presented[0]), admin=admin)


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


def check_host_and_origin() -> None:
    """421 for a ``Host`` the service does not answer for, 403 for a browser request from
    another origin (``api.origin``); the stream calls it too, before its upgrade."""
    settings: Settings = services().settings
    host = request.host
    if not host_allowed(host, settings.allowed_host_list):
        raise ApiError(421, "host_not_allowed", f"this service does not answer for host "
                       f"{host!r}: add it to VISIONQ_ALLOWED_HOSTS (IP addresses, localhost, "
                       "single-label and .local/.lan/.internal/.home.arpa/.svc names are "
                       "allowed by default)")
    refusal = cross_origin_refusal(
        request.method, _is_public(request.path), request.headers.get("Origin"),
        request.headers.get("Sec-Fetch-Site"), host, request.scheme,
        settings.cors_origin_list)
    if refusal is not None:
        raise ApiError(403, "cross_origin_refused", refusal)


def _cors_headers(response: Response) -> Response:
    """CORS headers for the origins ``VISIONQ_CORS_ORIGINS`` lists (a preflight included);
    other origins get none, so a browser shows their pages nothing."""
    origin = request.headers.get("Origin")
    if origin is None or not origin_listed(origin, services().settings.cors_origin_list):
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    response.vary.add("Origin")
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
    return response


def init_security(app: Flask, settings: Settings) -> None:
    app.extensions[SECRET_EXTENSION] = server_secret(settings.secret_key, settings.state_dir)
    if not settings.api_key_list and not settings.admin_key_list and not is_loopback(
            settings.api_host):
        log.warning("the API is configured for %s with no API keys: anyone who can reach it "
                    "can submit jobs and read every job; set VISIONQ_API_KEYS and "
                    "VISIONQ_ADMIN_KEYS (see docs/security.md)", settings.api_host)

    @app.before_request
    def _guard() -> None:
        check_host_and_origin()
        if _is_public(request.path) or request.method == "OPTIONS":
            return
        caller = authenticate()
        if request.endpoint in ADMIN_ENDPOINTS and not caller.admin:
            raise admin_key_required(f"{request.method} {request.path}")
        rate_limit(caller)
        g.caller = caller

    app.after_request(_cors_headers)


def current_caller() -> Caller:
    return g.get("caller") or Caller(f"ip:{request.remote_addr}", admin=False, keyed=False)

