"""Which webhook URLs a job may carry, and where the sender may connect
(``visionq.callbacks.destinations``): table-driven, no network but the resolver's
``localhost``."""

from __future__ import annotations

import ipaddress

import pytest

from visionq.callbacks.destinations import (
    MAX_URL_LENGTH,
    AllowList,
    DestinationError,
    check_url,
    resolve,
)

NOTHING = AllowList.parse("")


@pytest.mark.parametrize(("url", "code"), [
    ("http://127.0.0.1:8080/hook", "callback_refused"),
    ("http://127.1.2.3/hook", "callback_refused"),
    ("http://169.254.169.254/latest/meta-data/", "callback_refused"),
    ("http://10.0.0.5/", "callback_refused"),
    ("http://192.168.1.10/", "callback_refused"),
    ("http://172.16.0.1/", "callback_refused"),
    ("http://100.64.0.1/", "callback_refused"),  # shared (carrier-grade NAT)
    ("http://0.0.0.0/", "callback_refused"),
    ("http://[::1]/", "callback_refused"),
    ("http://[::ffff:127.0.0.1]/", "callback_refused"),  # IPv4 in IPv6 clothing
    ("http://[fe80::1]/", "callback_refused"),
    ("http://[fd00::1]/", "callback_refused"),
    ("http://224.0.0.1/", "callback_refused"),
    ("http://localhost:9000/", "callback_refused"),
    ("http://app.localhost/", "callback_refused"),
    ("ftp://example.com/", "invalid_callback_url"),
    ("file:///etc/passwd", "invalid_callback_url"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "invalid_callback_url"),
    ("http:///nohost", "invalid_callback_url"),
    ("http://user:pw@example.com/", "invalid_callback_url"),
    ("http://example.com:99999/", "invalid_callback_url"),
    ("http://exa mple.com/", "invalid_callback_url"),
    ("http://example.com/\r\nX: y", "invalid_callback_url"),
    ("", "invalid_callback_url"),
    ("https://example.com/" + "a" * MAX_URL_LENGTH, "invalid_callback_url"),
])
def test_refused_at_submit(url: str, code: str) -> None:
    with pytest.raises(DestinationError) as caught:
        check_url(url, NOTHING)
    assert caught.value.code == code


@pytest.mark.parametrize("url", [
    "https://8.8.8.8/hook", "http://1.1.1.1:8080/x?y=1", "https://[2606:4700::1111]/",
])
def test_public_addresses_are_accepted(url: str) -> None:
    assert check_url(url, NOTHING) == url


@pytest.mark.parametrize(("allow", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8080/hook"),
    ("127.0.0.0/8", "http://localhost:8080/hook"),
    ("10.0.0.0/8", "http://10.1.2.3/"),
    ("::1", "http://[::1]:81/"),
    ("127.0.0.1", "http://[::ffff:127.0.0.1]/"),
    ("homeassistant.local", "http://homeassistant.local:8123/api/webhook/x"),
    ("169.254.169.254", "http://169.254.169.254/"),
])
def test_listed_destinations_are_accepted(allow: str, url: str) -> None:
    assert check_url(url, AllowList.parse(allow)) == url


def test_a_listed_network_allows_only_itself() -> None:
    allow = AllowList.parse("10.0.0.0/8, 127.0.0.1")
    assert allow.allows(ipaddress.ip_address("10.9.9.9"))
    assert not allow.allows(ipaddress.ip_address("192.168.0.1"))
    assert not allow.allows(ipaddress.ip_address("127.0.0.2"))
    assert not allow.allows(ipaddress.ip_address("169.254.169.254"))


def test_delivery_checks_the_resolved_address() -> None:
    """At delivery a name is resolved and its addresses checked: ``localhost`` resolves to
    loopback, refused unless listed; listed, the sender gets only allowed addresses."""
    with pytest.raises(DestinationError) as caught:
        resolve("http://localhost:9/hook", NOTHING)
    assert caught.value.code == "callback_refused"
    _, addresses = resolve("http://localhost:9/hook", AllowList.parse("127.0.0.1"))
    assert addresses and all(str(each) == "127.0.0.1" for each in addresses)
    with pytest.raises(DestinationError):
        resolve("http://169.254.169.254/", NOTHING)
