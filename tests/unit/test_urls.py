import ipaddress

import pytest

from aggregator.urls import canonical_url, is_address_allowed, is_public_address


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Example.COM/a/b?utm_source=x&id=3#top", "https://example.com/a/b?id=3"),
        ("http://example.com:80/x?fbclid=1&gclid=2", "http://example.com/x"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/p?b=2&a=1&UTM_Campaign=z", "https://example.com/p?b=2&a=1"),
        ("  https://example.com/p  ", "https://example.com/p"),
        ("https://Example.com./p", "https://example.com/p"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.216.34", True),
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
        ("::ffff:0:a00:1", False),  # IPv4-translated (SIIT) 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::5db8:d822", True),  # NAT64 of a public address
        ("64:ff9b:1::a00:1", False),  # local-use NAT64 prefix
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("2002:5db8:d822::1", True),  # 6to4 of a public address
        ("fec0::1", False),  # deprecated site-local
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


def test_allowed_networks_open_only_what_they_name() -> None:
    allowed = [ipaddress.ip_network("127.0.0.0/8")]
    assert is_address_allowed(ipaddress.ip_address("127.0.0.2"), allowed)
    assert not is_address_allowed(ipaddress.ip_address("10.0.0.1"), allowed)
    assert not is_address_allowed(ipaddress.ip_address("::1"), allowed)


def test_an_overlong_canonical_url_is_bounded_and_still_distinct() -> None:
    base = "https://news.example/" + "é" * 1500
    first, second = canonical_url(base + "/1"), canonical_url(base + "/2")
    assert first != second
    assert all(len(url.encode()) <= 2000 for url in (first, second))
    assert first.startswith("https://news.example/éé") and "#sha256=" in first
