"""``api.origin``'s pure checks, table-driven: which Host names the API answers for by
default, and which browser requests count as coming from another origin."""

from __future__ import annotations

import pytest

from api.origin import cross_origin_refusal, host_allowed, origin_listed, same_origin, split_host


@pytest.mark.parametrize(("host", "parsed"), [
    ("localhost:8000", ("localhost", 8000)),
    ("[::1]:8000", ("::1", 8000)),
    ("[fe80::1]", ("fe80::1", None)),
    ("VisionQ.LAN.", ("visionq.lan", None)),
    ("::1", ("::1", None)),
    ("", ("", None)),
])
def test_split_host(host: str, parsed: tuple[str, int | None]) -> None:
    assert split_host(host) == parsed


@pytest.mark.parametrize(("host", "allowed", "expected"), [
    ("127.0.0.1:8000", [], True),
    ("10.1.2.3", [], True),
    ("203.0.113.9:8000", [], True),  # an address cannot be rebound to
    ("[::1]:8000", [], True),
    ("localhost", [], True),
    ("visionq:8000", [], True),  # Compose / Kubernetes service name
    ("nas.local", [], True),
    ("cam.lan", [], True),
    ("vq.internal", [], True),
    ("vq.home.arpa", [], True),
    ("api.ns.svc", [], True),
    ("api.ns.svc.cluster.local", [], True),
    ("app.localhost", [], True),
    ("rebind.example:8000", [], False),
    ("local.evil.com", [], False),
    ("evil-lan", [], True),
    ("evil.lan.example.com", [], False),
    ("", [], False),
    ("vq.example.org", ["vq.example.org"], True),
    ("other.example.org", ["vq.example.org"], False),
    ("a.b.example.org", [".example.org"], True),
    ("example.org", [".example.org"], True),
    ("badexample.org", [".example.org"], False),
    ("anything.example", ["*"], True),
])
def test_host_allowed(host: str, allowed: list[str], expected: bool) -> None:
    assert host_allowed(host, allowed) is expected


@pytest.mark.parametrize(("origin", "host", "scheme", "expected"), [
    ("http://localhost:8000", "localhost:8000", "http", True),
    ("http://localhost:3000", "localhost:8000", "http", False),
    ("https://vq.lan", "vq.lan", "http", True),  # TLS ended at a proxy
    ("http://vq.lan", "vq.lan:80", "http", True),
    ("http://evil.example", "vq.lan", "http", False),
    ("null", "vq.lan", "http", False),
    ("http://[::1]:8000", "[::1]:8000", "http", True),
    ("http://vq.lan:99999", "vq.lan", "http", False),
])
def test_same_origin(origin: str, host: str, scheme: str, expected: bool) -> None:
    assert same_origin(origin, host, scheme) is expected


@pytest.mark.parametrize(("origin", "listed", "expected"), [
    ("https://app.example.com", ["https://app.example.com"], True),
    ("https://app.example.com:443", ["https://app.example.com"], True),
    ("http://app.example.com", ["https://app.example.com"], False),
    ("https://app.example.com.evil", ["https://app.example.com"], False),
    ("https://anything", ["*"], True),
    ("https://app.example.com", [], False),
])
def test_origin_listed(origin: str, listed: list[str], expected: bool) -> None:
    assert origin_listed(origin, listed) is expected


@pytest.mark.parametrize(("method", "public", "origin", "fetch_site", "refused"), [
    ("POST", False, None, None, False),  # curl, Frigate, Home Assistant: no browser headers
    ("POST", False, None, "same-origin", False),
    ("POST", False, None, "none", False),  # typed into the address bar
    ("POST", False, None, "cross-site", True),
    ("POST", False, None, "same-site", True),
    ("POST", False, "https://evil.example", None, True),
    ("POST", False, "http://vq.lan:8000", "same-origin", False),
    ("GET", False, "https://evil.example", None, True),
    ("GET", True, "https://evil.example", "cross-site", False),  # a link to the UI
    ("POST", True, "https://evil.example", None, True),
    ("GET", False, "https://app.example.com", "cross-site", False),  # listed
])
def test_cross_origin_refusal(method: str, public: bool, origin: str | None,
                              fetch_site: str | None, refused: bool) -> None:
    reason = cross_origin_refusal(method, public, origin, fetch_site, "vq.lan:8000", "http",
                                  ["https://app.example.com"])
    assert (reason is not None) is refused
    if refused:
        assert "VISIONQ_CORS_ORIGINS" in reason
