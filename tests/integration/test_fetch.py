"""The fetcher against a real loopback server. Host names that resolve elsewhere go through a test
resolver, and the transport refuses any connection off loopback, so a guard bug fails the test
instead of reaching the network."""

from __future__ import annotations

import gzip
import ipaddress
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import pytest

from aggregator.fetch import Fetcher, FetchError, FetchErrorKind
from aggregator.settings import Settings
from aggregator.urls import IpAddress
from tests.conftest import LOOPBACK, FixtureSite, _handler_for

FAKE_DNS = {
    "metadata.test": "169.254.169.254",
    "intranet.test": "10.1.2.3",
    "router.test": "192.168.0.1",
    "cgnat.test": "100.64.1.1",
    "multicast.test": "224.0.0.251",
    "ula.test": "fd12::1",
    "v6loop.test": "::1",
    # IPv6 addresses that carry an IPv4 one a gateway or the kernel may turn into it
    "nat64.test": "64:ff9b::a9fe:a9fe",
    "nat64-local.test": "64:ff9b:1::a00:1",
    "sixtofour.test": "2002:a00:1::1",
    "v4compat.test": "::7f00:1",
    "siit.test": "::ffff:0:a00:1",
    "sitelocal.test": "fec0::1",
}


class LoopbackOnlyBackend(httpcore.SyncBackend):
    """Under the guard: any connection off loopback fails the test instead of leaving."""

    def __init__(self) -> None:
        self.connected: list[str] = []

    def connect_tcp(
        self, host: str, port: int, *args: Any, **kwargs: Any
    ) -> httpcore.NetworkStream:
        if not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"the test tried to connect to {host}")
        self.connected.append(host)
        return super().connect_tcp(host, port, *args, **kwargs)


def _resolver(host: str, port: int) -> list[IpAddress]:
    return [ipaddress.ip_address(FAKE_DNS.get(host, host))]


def _fetcher(*, allow_loopback: bool = True, **overrides: object) -> Fetcher:
    settings = Settings(
        _env_file=None,
        fetch_allow_networks=[LOOPBACK] if allow_loopback else [],
        **{"fetch_timeout": 5, **overrides},  # type: ignore[arg-type]
    )
    return Fetcher(settings, resolver=_resolver, network_backend=LoopbackOnlyBackend())


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


@pytest.mark.parametrize("layers", [1, 2])
def test_a_compression_bomb_never_sits_in_memory_past_the_cap(
    site: FixtureSite, layers: int
) -> None:
    bomb = b"\0" * 50_000_000
    for _ in range(layers):
        bomb = gzip.compress(bomb)
    url = site.serve("/bomb", bomb, headers={"Content-Encoding": ", ".join(["gzip"] * layers)})
    fetcher = _fetcher()
    tracemalloc.start()
    try:
        with pytest.raises(FetchError) as caught:
            fetcher.fetch(url, max_bytes=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.kind is FetchErrorKind.TOO_LARGE
    assert peak < 8_000_000, f"{peak} bytes held to refuse a body capped at 1 MB"


def test_gzip_on_gzip_is_decoded(site: FixtureSite) -> None:
    body = gzip.compress(gzip.compress(b"hello " * 1000))
    url = site.serve("/twice", body, headers={"Content-Encoding": "gzip, gzip"})
    assert _fetcher().fetch(url, max_bytes=10_000).body == b"hello " * 1000


def test_deflate_with_and_without_zlib_header_is_decoded(site: FixtureSite) -> None:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    bodies = [zlib.compress(b"zlib " * 100), raw.compress(b"raw " * 100) + raw.flush()]
    wrapped, bare = (
        site.serve(f"/d{i}", b, headers={"Content-Encoding": "deflate"})
        for i, b in enumerate(bodies)
    )
    assert _fetcher().fetch(wrapped, max_bytes=1000).body == b"zlib " * 100
    assert _fetcher().fetch(bare, max_bytes=1000).body == b"raw " * 100


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


# ---------------------------------------------------------------- DNS rebinding, IPv6


class RebindingResolver:
    """Answers `first` once, then `later` for ever: a rebinding attacker's DNS."""

    def __init__(self, first: str, later: str) -> None:
        self.answers = [first, later]
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[IpAddress]:
        self.calls += 1
        return [ipaddress.ip_address(self.answers[min(self.calls - 1, 1)])]


@pytest.fixture
def trap(site: FixtureSite) -> Iterator[FixtureSite]:
    """A second server on the site's port at another loopback address, outside the allow list."""
    server = ThreadingHTTPServer(("127.0.0.66", site.port), BaseHTTPRequestHandler)
    fixture = FixtureSite("127.0.0.66", site.port)
    server.RequestHandlerClass = _handler_for(fixture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield fixture
    server.shutdown()
    server.server_close()


def _rebinding_fetcher(resolver: RebindingResolver) -> tuple[Fetcher, LoopbackOnlyBackend]:
    settings = Settings(
        _env_file=None,
        fetch_allow_networks=[ipaddress.ip_network("127.0.0.9/32")],
        fetch_timeout=5,
    )
    backend = LoopbackOnlyBackend()
    return Fetcher(settings, resolver=resolver, network_backend=backend), backend


def test_the_checked_address_is_the_one_connected_to(site: FixtureSite, trap: FixtureSite) -> None:
    site.serve("/x", "the real site")
    trap.serve("/x", "the trap")
    resolver = RebindingResolver(first="127.0.0.9", later="127.0.0.66")
    fetcher, backend = _rebinding_fetcher(resolver)
    result = fetcher.fetch(f"http://rebind.test:{site.port}/x", max_bytes=100)
    assert result.body == b"the real site"
    assert trap.hits == [] and backend.connected == ["127.0.0.9"] and resolver.calls == 1


def test_a_second_connection_is_checked_again(site: FixtureSite, trap: FixtureSite) -> None:
    site.serve("/x", "the real site")
    resolver = RebindingResolver(first="127.0.0.9", later="127.0.0.66")
    fetcher, backend = _rebinding_fetcher(resolver)
    fetcher.fetch(f"http://rebind.test:{site.port}/x", max_bytes=100)
    fetcher.close()  # no pooled connection to reuse: the next request resolves anew
    fetcher, backend = _rebinding_fetcher(resolver)
    with pytest.raises(FetchError) as caught:
        fetcher.fetch(f"http://rebind.test:{site.port}/x", max_bytes=100)
    assert caught.value.kind is FetchErrorKind.BLOCKED_ADDRESS
    assert trap.hits == [] and backend.connected == []


def test_a_private_first_answer_is_refused_before_any_connection(site: FixtureSite) -> None:
    site.serve("/x", "hello")
    fetcher, backend = _rebinding_fetcher(RebindingResolver("169.254.169.254", "127.0.0.9"))
    with pytest.raises(FetchError) as caught:
        fetcher.fetch(f"http://rebind.test:{site.port}/x", max_bytes=100)
    assert caught.value.kind is FetchErrorKind.BLOCKED_ADDRESS
    assert site.hits == [] and backend.connected == []


def test_one_private_address_among_public_ones_is_refused() -> None:
    def resolver(host: str, port: int) -> list[IpAddress]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.1")]

    fetcher = Fetcher(
        Settings(_env_file=None),
        resolver=resolver,
        network_backend=LoopbackOnlyBackend(),
    )
    with pytest.raises(FetchError) as caught:
        fetcher.fetch("http://mixed.test/", max_bytes=100)
    assert caught.value.kind is FetchErrorKind.BLOCKED_ADDRESS


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]/",
        "http://[fd12::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[::ffff:127.0.0.1]:9/",
    ],
)
def test_ipv6_literals_are_refused(url: str) -> None:
    with pytest.raises(FetchError) as caught:
        _fetcher(allow_loopback=False).fetch(url, max_bytes=100)
    assert caught.value.kind is FetchErrorKind.BLOCKED_ADDRESS


@pytest.mark.parametrize(
    "target", ["http://v6loop.test/", "http://ula.test/", "http://[::1]/", "http://[fd00::5]:8080/"]
)
def test_redirects_to_ipv6_private_hosts_are_refused(site: FixtureSite, target: str) -> None:
    url = site.serve("/r", "", status=301, headers={"Location": target})
    with pytest.raises(FetchError) as caught:
        _fetcher().fetch(url, max_bytes=100)
    assert caught.value.kind is FetchErrorKind.BLOCKED_ADDRESS
    assert site.hits == ["/r"]


def test_a_redirect_to_a_rebinding_host_connects_to_the_checked_address(
    site: FixtureSite, trap: FixtureSite
) -> None:
    site.serve("/r", "", status=302, headers={"Location": f"http://rebind.test:{site.port}/x"})
    site.serve("/x", "the real site")
    trap.serve("/x", "the trap")
    resolver = RebindingResolver(first="127.0.0.9", later="127.0.0.66")
    fetcher, _ = _rebinding_fetcher(resolver)
    assert fetcher.fetch(site.url("/r"), max_bytes=100).body == b"the real site"
    assert trap.hits == []


# ---------------------------------------------------------------- whole-request deadline


@dataclass
class Trickler:
    """A raw server on loopback that sends `script`, then `drip` every 50 ms for at most 10 s,
    and never finishes the response."""

    url: str = ""
    script: list[bytes] = field(default_factory=lambda: [b"HTTP/1.1 200 OK\r\n"])
    drip: bytes = b"X"


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    listener = socket.create_server(("127.0.0.7", 0))
    listener.settimeout(10)
    trickle = Trickler(url=f"http://127.0.0.7:{listener.getsockname()[1]}/slow")
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            ends = time.monotonic() + 10
            try:
                conn.sendall(b"".join(trickle.script))
                while not stop.is_set() and time.monotonic() < ends:
                    conn.sendall(trickle.drip)
                    stop.wait(0.05)
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield trickle
    stop.set()
    listener.close()
    thread.join(timeout=11)


def _fetch_within(url: str, seconds: float, **settings: Any) -> BaseException | None:
    """The error a fetch ends with, failing the test if it is still running after `seconds`."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            _fetcher(**settings).fetch(url, max_bytes=1_000_000)
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    assert outcome, f"the fetch was still running after {seconds} s"
    return outcome[0]


def test_headers_trickled_byte_by_byte_hit_the_whole_request_deadline(trickler: Trickler) -> None:
    trickler.script.append(b"X-Slow: ")
    error = _fetch_within(trickler.url, 4, fetch_timeout=1)
    assert isinstance(error, FetchError) and error.kind is FetchErrorKind.TIMEOUT


def test_a_gzip_body_that_decodes_to_nothing_hits_the_whole_request_deadline(
    trickler: Trickler,
) -> None:
    # a gzip header whose file name never ends: bytes keep coming, no decoded byte ever does
    trickler.script.append(b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
    trickler.script.append(b"a\r\n\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\xff\r\n")
    trickler.drip = b"1\r\nA\r\n"
    error = _fetch_within(trickler.url, 4, fetch_timeout=1)
    assert isinstance(error, FetchError) and error.kind is FetchErrorKind.TIMEOUT


class SlowHandler(BaseHTTPRequestHandler):
    """Answers every path after 0.7 s: robots.txt with 404 (no rules), anything else with 200."""

    def do_GET(self) -> None:
        time.sleep(0.7)
        body = b"page"
        self.send_response(404 if self.path == "/robots.txt" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_robots_txt_counts_against_the_whole_request_deadline() -> None:
    server = ThreadingHTTPServer(("127.0.0.8", 0), SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.8:{server.server_address[1]}/page"
        with pytest.raises(FetchError) as caught:
            _fetcher(fetch_timeout=1).fetch(url, max_bytes=100, obey_robots=True)
        assert caught.value.kind is FetchErrorKind.TIMEOUT
    finally:
        server.shutdown()
        server.server_close()


def test_endless_headers_are_refused_before_they_pile_up(trickler: Trickler) -> None:
    trickler.script.append(b"X-Big: ")
    trickler.drip = b"a" * 65_536
    error = _fetch_within(trickler.url, 4)
    assert isinstance(error, FetchError) and error.kind is FetchErrorKind.NETWORK


def test_an_endless_chunked_body_stops_at_the_cap(trickler: Trickler) -> None:
    trickler.script.append(b"Transfer-Encoding: chunked\r\n\r\n")
    trickler.drip = b"10000\r\n" + b"a" * 65_536 + b"\r\n"
    error = _fetch_within(trickler.url, 4)
    assert isinstance(error, FetchError) and error.kind is FetchErrorKind.TOO_LARGE


MALFORMED_URLS = ["http://127.0.0.9:99999/x", "http://127.0.0.9:abc/x", "http://[127.0.0.9/x"]


@pytest.mark.parametrize("url", MALFORMED_URLS)
def test_a_malformed_url_is_a_bad_url(url: str) -> None:
    with pytest.raises(FetchError) as caught:
        _fetcher().fetch(url, max_bytes=100)
    assert caught.value.kind is FetchErrorKind.BAD_URL


# (A port that is no number in a Location is refused by httpx itself, as a network error.)
@pytest.mark.parametrize("location", ["http://127.0.0.9:99999/x", "http://[127.0.0.9/x"])
def test_a_redirect_to_a_malformed_url_is_a_bad_url(site: FixtureSite, location: str) -> None:
    url = site.serve("/r", "", status=302, headers={"Location": location})
    with pytest.raises(FetchError) as caught:
        _fetcher().fetch(url, max_bytes=100)
    assert caught.value.kind is FetchErrorKind.BAD_URL
