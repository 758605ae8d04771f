"""The fetcher against a real loopback server. Host names that resolve elsewhere go through a test
resolver, and the transport refuses any connection off loopback, so a guard bug fails the test
instead of reaching the network."""

from __future__ import annotations

import gzip
import ipaddress

import httpx
import pytest

from aggregator.fetch import Fetcher, FetchError, FetchErrorKind
from aggregator.settings import Settings
from aggregator.urls import IpAddress
from tests.conftest import LOOPBACK, FixtureSite

FAKE_DNS = {
    "metadata.test": "169.254.169.254",
    "intranet.test": "10.1.2.3",
    "router.test": "192.168.0.1",
    "cgnat.test": "100.64.1.1",
    "multicast.test": "224.0.0.251",
    "ula.test": "fd12::1",
    "v6loop.test": "::1",
}


class LoopbackOnlyTransport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not ipaddress.ip_address(request.url.host).is_loopback:
            raise AssertionError(f"the test tried to connect to {request.url.host}")
        return super().handle_request(request)


def _resolver(host: str, port: int) -> list[IpAddress]:
    return [ipaddress.ip_address(FAKE_DNS.get(host, host))]


def _fetcher(*, allow_loopback: bool = True, **overrides: object) -> Fetcher:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        fetch_allow_networks=[LOOPBACK] if allow_loopback else [],
        fetch_timeout=5,
        **overrides,  # type: ignore[arg-type]
    )
    return Fetcher(settings, resolver=_resolver, transport=LoopbackOnlyTransport())


def test_plain_get_sends_an_honest_user_agent(site: FixtureSite) -> None:
    url = site.serve("/x", "hello", headers={"Content-Type": "text/plain"})
    fetcher = _fetcher(contact_url="https://ops.example/about-our-crawler")
    result = fetcher.fetch(url, max_bytes=100)
    assert (result.status, result.body, result.url) == (200, b"hello", url)
    assert result.headers["content-type"] == "text/plain"
    assert site.user_agents == ["news-aggregator/0.1 (+https://ops.example/about-our-crawler)"]


def test_conditional_get_answers_not_modified(site: FixtureSite) -> None:
    url = site.serve("/feed", "<rss/>", headers={"ETag": '"abc"'})
    assert _fetcher().fetch(url, max_bytes=100, etag='"abc"').not_modified
    assert _fetcher().fetch(url, max_bytes=100, etag='"old"').status == 200


def test_body_over_the_cap_is_refused(site: FixtureSite) -> None:
    url = site.serve("/big", b"x" * 300_000)
    with pytest.raises(FetchError) as caught:
        _fetcher().fetch(url, max_bytes=100_000)
    assert caught.value.kind is FetchErrorKind.TOO_LARGE


def test_gzip_bomb_stops_at_the_decompressed_cap(site: FixtureSite) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    url = site.serve("/bomb", bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(FetchError) as caught:
        _fetcher().fetch(url, max_bytes=1_000_000)
    assert caught.value.kind is FetchErrorKind.TOO_LARGE


def test_loopback_is_refused_unless_allowed(site: FixtureSite) -> None:
    url = site.serve("/x", "hello")
    with pytest.raises(FetchError) as caught:
        _fetcher(allow_loopback=False).fetch(url, max_bytes=100)
    assert caught.value.kind is FetchErrorKind.BLOCKED_ADDRESS
    assert site.hits == []


@pytest.mark.parametrize("host", sorted(FAKE_DNS))
def test_private_and_special_addresses_are_refused(host: str) -> None:
    with pytest.raises(FetchError) as caught:
        _fetcher().fetch(f"http://{host}/latest/meta-data/", max_bytes=100)
    assert caught.value.kind is FetchErrorKind.BLOCKED_ADDRESS


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.org/x", "gopher://x/", "http:///x"]
)
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(FetchError) as caught:
        _fetcher().fetch(url, max_bytes=100)
    assert caught.value.kind is FetchErrorKind.BAD_URL


def test_redirect_to_a_private_host_is_refused(site: FixtureSite) -> None:
    url = site.serve("/r", "", status=302, headers={"Location": "http://metadata.test/latest"})
    with pytest.raises(FetchError) as caught:
        _fetcher().fetch(url, max_bytes=100)
    assert caught.value.kind is FetchErrorKind.BLOCKED_ADDRESS
    assert site.hits == ["/r"]


def test_redirects_are_followed_and_recorded(site: FixtureSite) -> None:
    site.serve("/old", "", status=301, headers={"Location": "/mid"})
    site.serve("/mid", "", status=308, headers={"Location": site.url("/new")})
    site.serve("/new", "arrived")
    result = _fetcher().fetch(site.url("/old"), max_bytes=100)
    assert result.body == b"arrived"
    assert result.redirects == [(301, site.url("/mid")), (308, site.url("/new"))]


def test_redirect_loops_stop(site: FixtureSite) -> None:
    site.serve("/a", "", status=302, headers={"Location": "/b"})
    site.serve("/b", "", status=302, headers={"Location": "/a"})
    with pytest.raises(FetchError) as caught:
        _fetcher(fetch_max_redirects=5).fetch(site.url("/a"), max_bytes=100)
    assert caught.value.kind is FetchErrorKind.TOO_MANY_REDIRECTS
    assert len(site.hits) == 6


def test_connection_refused_is_a_network_error() -> None:
    with pytest.raises(FetchError) as caught:
        _fetcher().fetch("http://127.0.0.9:9/", max_bytes=100)
    assert caught.value.kind is FetchErrorKind.NETWORK
