"""Which ``Host`` the API answers for and which browser origins may call it: the checks
that stop DNS rebinding and cross-site writes (Django's ``ALLOWED_HOSTS`` and CSRF origin
check), as pure functions of the request's headers and the settings.

- **Host.** A rebinding attacker needs a public domain name that resolves to the service,
  so by default the API answers IP literals, ``localhost``, single-label names (a Compose
  or Kubernetes service such as ``visionq``) and names under private suffixes
  (``PRIVATE_SUFFIXES``), and refuses other names unless ``VISIONQ_ALLOWED_HOSTS`` lists
  them (``name``, ``.suffix`` for a domain and its subdomains, ``*`` for any).
- **Origin.** A browser says where a request comes from (``Origin``, and
  ``Sec-Fetch-Site`` on every request of a modern browser); clients that are not browsers
  (curl, Frigate, Home Assistant, SDKs) send neither and are unaffected.  A request from
  another origin is refused unless ``VISIONQ_CORS_ORIGINS`` lists that origin (``*``: any),
  except plain page loads (``GET``/``HEAD``) of public pages such as ``/`` and ``/docs``.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

PRIVATE_SUFFIXES = (".localhost", ".local", ".lan", ".internal", ".home.arpa", ".svc",
                    ".cluster.local")
"""Names no one can register publicly (RFC 6761/6762, RFC 8375, ICANN's .internal) or that
only a cluster's DNS answers (Kubernetes ``<service>.<namespace>.svc``)."""
CROSS_SITE_FETCH = frozenset({"cross-site", "same-site"})
"""``Sec-Fetch-Site`` values of a request another site's page made (``same-site`` is a
sibling subdomain: another origin all the same)."""
SAFE_METHODS = frozenset({"GET", "HEAD"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def split_host(host: str) -> tuple[str, int | None]:
    """``("name", port)`` of a ``Host`` header value (IPv6 in brackets), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    return name.rstrip("."), int(port) if port.isdigit() else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(host: str, allowed: list[str]) -> bool:
    name, _ = split_host(host)
    if not name:
        return False
    for entry in allowed:
        entry = entry.strip().lower().rstrip(".")
        if entry == "*" or name == entry or (
                entry.startswith(".") and (name.endswith(entry) or name == entry[1:])):
            return True
    return (_is_ip(name) or name == "localhost" or "." not in name
            or name.endswith(PRIVATE_SUFFIXES))


def _origin_parts(origin: str, scheme: str | None = None) -> tuple[str, int | None] | None:
    parts = urlsplit(origin.strip().lower())
    if not parts.scheme or not parts.hostname:
        return None  # "null" (sandboxed frames, file://) and junk
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname.rstrip("."), port or DEFAULT_PORTS.get(scheme or parts.scheme)


def origin_listed(origin: str, listed: list[str]) -> bool:
    if "*" in listed:
        return True
    parts = urlsplit(origin.strip().lower())
    mine = _origin_parts(origin)
    return mine is not None and any(
        urlsplit(entry.strip().lower()).scheme == parts.scheme
        and _origin_parts(entry) == mine for entry in listed if entry.strip())


def same_origin(origin: str, host: str, scheme: str) -> bool:
    """The ``Origin`` names the host (and port) the request was sent to.  Schemes are not
    compared: behind a TLS-terminating proxy the page is https and the request http."""
    mine = _origin_parts(origin)
    if mine is None:
        return False
    name, port = split_host(host)
    origin_name, origin_port = mine
    if port is None:
        port = DEFAULT_PORTS.get(scheme)
    default = {80, 443}
    return origin_name == name and (origin_port == port or (
        origin_port in default and port in default))


def cross_origin_refusal(method: str, public: bool, origin: str | None,
                         fetch_site: str | None, host: str, scheme: str,
                         listed: list[str]) -> str | None:
    """Why a request from a browser on another origin is refused, or ``None``."""
    if origin is not None:
        if same_origin(origin, host, scheme) or origin_listed(origin, listed):
            return None
        source = f"origin {origin!r}"
    elif fetch_site is not None and fetch_site.lower() in CROSS_SITE_FETCH:
        source = f"a {fetch_site.lower()} page"
    else:
        return None  # not a browser, or the browser's own navigation to this service
    if public and method in SAFE_METHODS:
        return None  # following a link to /, /docs or /healthz changes nothing
    return (f"requests from {source} are refused: only this service's own pages and the "
            "origins listed in VISIONQ_CORS_ORIGINS may call the API from a browser")
