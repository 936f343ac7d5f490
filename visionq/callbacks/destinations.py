"""Where a webhook may go: ``http``/``https`` URLs of bounded length, to public addresses,
or to the addresses, networks and host names ``VISIONQ_CALLBACK_ALLOW`` lists.

Loopback, link-local (the cloud metadata service at 169.254.169.254), private, shared,
reserved, multicast and unspecified addresses are refused unless listed, so a job cannot
aim a callback at a service inside the deployment.  The API checks a job's URL at submit
(``check_url``: the syntax, an IP literal, ``localhost``, and the addresses a name resolves
to within ``SUBMIT_RESOLVE_S``); the sender checks again at every attempt, after resolving
the name, and connects to the address it checked (``resolve``), so a name that resolves to
something else the second time (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2048
SCHEMES = ("http", "https")
SUBMIT_RESOLVE_S = 2.0
"""How long the API waits for a callback host's DNS at submit; a name that does not resolve
in time is accepted (the sender resolves and checks it again at each attempt)."""
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=4,
                                                  thread_name_prefix="visionq-callback-dns")


class DestinationError(ValueError):
    """A callback URL that is malformed (``code`` ``invalid_callback_url``) or aimed at an
    address that is not allowed (``callback_refused``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class AllowList:
    """``VISIONQ_CALLBACK_ALLOW`` parsed: networks (an address is a /32 or /128) and host
    names (lower case)."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def allows(self, address: IPAddress) -> bool:
        address = _unmapped(address)
        if _public(address):
            return True
        return any(address.version == net.version and address in net for net in self.networks)


def _unmapped(address: IPAddress) -> IPAddress:
    """An IPv4 address written as IPv6 (``::ffff:127.0.0.1``) is checked as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _public(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast and not address.is_unspecified


def parse_url(url: str) -> SplitResult:
    """The URL split, or ``DestinationError`` (``invalid_callback_url``)."""
    if not isinstance(url, str) or not url:
        raise DestinationError("invalid_callback_url", "callback_url must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise DestinationError("invalid_callback_url",
                               f"callback_url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise DestinationError("invalid_callback_url",
                               "callback_url contains spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError as exc:
        raise DestinationError("invalid_callback_url", f"callback_url is not a URL: {exc}") from exc
    if parts.scheme.lower() not in SCHEMES:
        raise DestinationError("invalid_callback_url", "callback_url must be an http:// or "
                               "https:// URL")
    if not parts.hostname:
        raise DestinationError("invalid_callback_url", "callback_url has no host")
    if parts.username is not None or parts.password is not None:
        raise DestinationError("invalid_callback_url", "callback_url must not carry user:"
                               "password@ (put a token in the path or query instead)")
    return parts


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _refused(host: str, address: IPAddress | str) -> DestinationError:
    return DestinationError(
        "callback_refused", f"callback_url's host {host} is {address}, not a public address: "
        "list it in VISIONQ_CALLBACK_ALLOW on the server to allow it")


def check_url(url: str, allow: AllowList, *, resolve_s: float = SUBMIT_RESOLVE_S) -> str:
    """The URL if a job may carry it (at submit), else ``DestinationError``."""
    parts = parse_url(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if host in allow.hosts:
        return url
    address = _literal(host)
    if address is not None:
        if not allow.allows(address):
            raise _refused(host, address)
        return url
    if host == "localhost" or host.endswith(".localhost"):
        if not allow.allows(ipaddress.ip_address("127.0.0.1")):
            raise _refused(host, "loopback")
        return url
    future = _resolver.submit(_addresses, host, parts.port or 443)
    try:
        addresses = future.result(timeout=resolve_s)
    except (OSError, concurrent.futures.TimeoutError):
        future.cancel()  # not started yet (a queue of slow lookups): not worth doing later
        return url  # unknown now: the sender resolves it and checks it at each attempt
    if addresses and not any(allow.allows(each) for each in addresses):
        raise _refused(host, addresses[0])
    return url


def _addresses(host: str, port: int) -> list[IPAddress]:
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def resolve(url: str, allow: AllowList) -> tuple[SplitResult, list[IPAddress]]:
    """At delivery: the URL split and the addresses its host resolves to that may be
    connected to (the only ones the sender connects to), or ``DestinationError``.
    ``OSError`` when the name does not resolve (a transient failure: retried)."""
    parts = parse_url(url)
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    literal = _literal(host)
    addresses = [literal] if literal is not None else _addresses(host, port)
    if host in allow.hosts:
        return parts, addresses
    usable = [each for each in addresses if allow.allows(each)]
    if not usable:
        raise _refused(host, addresses[0] if addresses else "unresolvable")
    return parts, usable
