"""The only HTTP client: timeouts, size caps, conditional GET, redirects, per-host politeness,
robots.txt and the address guard.

The guard resolves each host once, checks every address, and connects to the address it checked
(a network backend under httpx), so a DNS answer that changes between check and connect (DNS
rebinding) cannot reach a private address. Host header and TLS SNI keep the host name.

Every socket read and write under a fetch waits at most until that fetch's deadline, so a server
that trickles headers, or body bytes that decode to nothing, cannot hold a fetch past it."""

from __future__ import annotations

import ipaddress
import socket
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
from protego import Protego

from aggregator.politeness import HostLimiter, make_host_limiter
from aggregator.settings import Settings
from aggregator.urls import IpAddress, IpNetwork, is_address_allowed, url_host

Resolver = Callable[[str, int], list[IpAddress]]
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ROBOTS_MAX_BYTES = 512 * 1024
ACCEPT_ENCODING = "gzip, deflate"  # the codings _decoded undoes, whatever httpx could
DECODE_STEP = 64 * 1024  # the most one decompression call may produce
_DEADLINE: ContextVar[float | None] = ContextVar("fetch_deadline", default=None)


class FetchErrorKind(StrEnum):
    BAD_URL = "bad_url"
    BLOCKED_ADDRESS = "blocked_address"
    DNS = "dns"
    TIMEOUT = "timeout"
    NETWORK = "network"
    TOO_LARGE = "too_large"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    HOST_BUSY = "host_busy"  # the host's politeness budget is spent: try again shortly
    ROBOTS_DISALLOWED = "robots_disallowed"  # robots.txt keeps us out of this URL


class FetchError(Exception):
    def __init__(self, kind: FetchErrorKind, message: str) -> None:
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class FetchResult:
    url: str  # after redirects
    status: int
    body: bytes
    headers: Mapping[str, str]
    redirects: list[tuple[int, str]] = field(default_factory=list)

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def resolve_host(host: str, port: int) -> list[IpAddress]:
    """Every address the host name resolves to (the system resolver)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(FetchErrorKind.DNS, f"cannot resolve {host}: {exc}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


class AddressGuard:
    """Resolves a host once and returns its addresses only if the guard allows every one."""

    def __init__(self, resolver: Resolver, allowed: list[IpNetwork]) -> None:
        self._resolve, self._allowed = resolver, allowed

    def checked_addresses(self, host: str, port: int) -> list[IpAddress]:
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
            addresses: list[IpAddress] = [literal]
        except ValueError:
            addresses = self._resolve(host, port)
        blocked = [a for a in addresses if not is_address_allowed(a, self._allowed)]
        if blocked or not addresses:
            raise FetchError(
                FetchErrorKind.BLOCKED_ADDRESS, f"{host} resolves to {blocked or 'nothing'}"
            )
        return addresses


class GuardedBackend(httpcore.NetworkBackend):
    """Connects to the addresses the guard checked, never to a second DNS answer."""

    def __init__(self, guard: AddressGuard, inner: httpcore.NetworkBackend | None = None) -> None:
        self._guard = guard
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._guard.checked_addresses(host, port)
        for address in addresses[:-1]:
            try:
                return self._connect(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                continue
        return self._connect(str(addresses[-1]), port, timeout, local_address, socket_options)

    def _connect(
        self,
        address: str,
        port: int,
        timeout: float | None,
        local_address: str | None,
        socket_options: Iterable[Any] | None,
    ) -> httpcore.NetworkStream:
        timeout = _until_deadline(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
        return DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise FetchError(FetchErrorKind.BAD_URL, "unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait ends by the current fetch's deadline, not only by the
    per-read timeout a trickling server can renew byte by byte."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _until_deadline(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _until_deadline(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _until_deadline(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _until_deadline(timeout: float | None, error: type[Exception]) -> float | None:
    """The timeout cut to what is left before the current fetch's deadline, if there is one."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("the whole request is over its deadline")
    return remaining if timeout is None else min(timeout, remaining)


@contextmanager
def _deadline_in(seconds: float) -> Iterator[None]:
    """Socket waits in this block end `seconds` from now (real time, as sockets wait)."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the guarded backend; TLS always verified."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        super().__init__()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=True),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


class Fetcher:
    """GETs with the service's limits. Safe for reuse across many requests; close() when done."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: Resolver = resolve_host,
        network_backend: httpcore.NetworkBackend | None = None,
        limiter: HostLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_redirects = settings.fetch_max_redirects
        self._timeout, self._connect_timeout = (
            settings.fetch_timeout,
            settings.fetch_connect_timeout,
        )
        self._limiter = limiter or make_host_limiter(settings)
        self._clock = clock
        self._robots = RobotsCache(settings.robots_cache_seconds, settings.user_agent, clock)
        guard = AddressGuard(resolver, list(settings.fetch_allow_networks))
        self._client = httpx.Client(
            follow_redirects=False,
            headers={"User-Agent": settings.user_agent_header, "Accept-Encoding": ACCEPT_ENCODING},
            transport=GuardedTransport(GuardedBackend(guard, network_backend)),
            trust_env=False,
        )

    def close(self) -> None:
        self._client.close()

    def fetch(
        self,
        url: str,
        *,
        max_bytes: int,
        etag: str | None = None,
        last_modified: str | None = None,
        obey_robots: bool = False,
    ) -> FetchResult:
        """GET url, following redirects hop by hop within one deadline. Each hop is guarded
        and, with obey_robots, must be allowed by its host's robots.txt."""
        headers = _conditional_headers(etag, last_modified)
        deadline = self._clock() + self._timeout
        redirects: list[tuple[int, str]] = []
        current = url
        while True:
            check_url(current)
            if obey_robots and not self.robots_allow(current):
                message = f"{current} is disallowed by robots.txt"
                raise FetchError(FetchErrorKind.ROBOTS_DISALLOWED, message)
            status, response_headers, body = self._get_once(current, headers, max_bytes, deadline)
            location = response_headers.get("location")
            if status not in REDIRECT_STATUSES or not location:
                return FetchResult(current, status, body, response_headers, redirects)
            if len(redirects) >= self._max_redirects:
                raise FetchError(
                    FetchErrorKind.TOO_MANY_REDIRECTS, f"more than {self._max_redirects}"
                )
            current = _redirect_target(current, location)
            redirects.append((status, current))

    def robots_allow(self, url: str) -> bool:
        """Whether the host's robots.txt (cached) lets our user agent fetch url."""
        return self._robots.allows(url, self)

    def _get_once(
        self, url: str, headers: Mapping[str, str], max_bytes: int, deadline: float
    ) -> tuple[int, dict[str, str], bytes]:
        timeout = self._hop_timeout(deadline, url)
        try:
            with (
                _deadline_in(deadline - self._clock()),
                self._host_slot(url_host(url)),
                self._client.stream("GET", url, headers=headers, timeout=timeout) as response,
            ):
                chunks = _decoded(response.iter_raw(), response.headers, max_bytes, url)
                body = _read_capped(chunks, max_bytes, url, deadline, self._clock)
                return response.status_code, _lower_keys(response.headers.items()), body
        except httpx.TimeoutException as exc:
            raise FetchError(FetchErrorKind.TIMEOUT, f"{url}: {type(exc).__name__}") from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise FetchError(FetchErrorKind.NETWORK, f"{url}: {type(exc).__name__}: {exc}") from exc

    def _hop_timeout(self, deadline: float, url: str) -> httpx.Timeout:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise FetchError(FetchErrorKind.TIMEOUT, f"{url}: deadline passed")
        return httpx.Timeout(remaining, connect=min(self._connect_timeout, remaining))

    @contextmanager
    def _host_slot(self, host: str) -> Iterator[None]:
        token = self._limiter.acquire(host)
        if token is None:
            raise FetchError(FetchErrorKind.HOST_BUSY, f"{host}: request budget spent")
        try:
            yield
        finally:
            self._limiter.release(host, token)


def check_url(url: str) -> None:
    """Only http(s) URLs with a host name (the addresses are checked when connecting)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is no number, or out of range, raises
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise FetchError(FetchErrorKind.BAD_URL, f"not a URL: {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(FetchErrorKind.BAD_URL, f"not an http(s) URL: {url!r}")


def _redirect_target(url: str, location: str) -> str:
    try:
        return urljoin(url, location)
    except ValueError as exc:  # a broken IPv6 address, say
        raise FetchError(FetchErrorKind.BAD_URL, f"{url}: redirect to {location!r}") from exc


class RobotsCache:
    """robots.txt per origin, kept for `ttl` seconds. 4xx means no rules; an unreachable or
    failing (5xx) robots.txt means stay out for now (RFC 9309)."""

    def __init__(self, ttl: float, user_agent: str, clock: Callable[[], float]) -> None:
        self._ttl, self._agent, self._clock = ttl, user_agent.split("/")[0], clock
        self._rules: dict[str, tuple[float, Protego | None, bool]] = {}

    def allows(self, url: str, fetcher: Fetcher) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        cached = self._rules.get(origin)
        if cached is None or cached[0] <= self._clock():
            cached = (self._clock() + self._ttl, *self._load(origin, fetcher))
            self._rules[origin] = cached
        _, rules, reachable = cached
        if rules is None:
            return reachable
        return bool(rules.can_fetch(url, self._agent))

    def _load(self, origin: str, fetcher: Fetcher) -> tuple[Protego | None, bool]:
        try:
            response = fetcher.fetch(f"{origin}/robots.txt", max_bytes=ROBOTS_MAX_BYTES)
        except FetchError as exc:
            if exc.kind is FetchErrorKind.HOST_BUSY:
                raise
            return None, False
        if response.ok:
            return Protego.parse(response.body.decode("utf-8", errors="replace")), True
        return None, response.status < 500


def _read_capped(
    chunks: Iterable[bytes], max_bytes: int, url: str, deadline: float, clock: Callable[[], float]
) -> bytes:
    """The decompressed body, stopping as soon as it passes max_bytes or the deadline."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(FetchErrorKind.TOO_LARGE, f"{url}: body over {max_bytes} bytes")
        if clock() > deadline:
            raise FetchError(FetchErrorKind.TIMEOUT, f"{url}: whole request over its deadline")
        parts.append(chunk)
    return b"".join(parts)


def _decoded(
    raw: Iterable[bytes], headers: httpx.Headers, max_bytes: int, url: str
) -> Iterable[bytes]:
    """The body with its gzip/deflate content codings undone (last applied, first undone) in
    steps of at most DECODE_STEP bytes, so a compression bomb never sits in memory whole. Each
    coding layer may produce a little more than max_bytes, no more. Unknown codings stay, as
    httpx leaves them."""
    codings = [c.strip().lower() for c in headers.get("content-encoding", "").split(",")]
    chunks = raw
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip", "deflate"):
            limit = max_bytes + max_bytes // 64 + 1024  # room for a coding's own overhead
            chunks = _inflated(chunks, coding, limit, url)
    return chunks


def _inflated(chunks: Iterable[bytes], coding: str, limit: int, url: str) -> Iterator[bytes]:
    inflater: Any = None
    produced = 0
    try:
        for chunk in chunks:
            if inflater is None and chunk:
                inflater = _inflater(coding, chunk)
            for piece in _inflate_steps(inflater, chunk) if chunk else ():
                produced += len(piece)
                if produced > limit:
                    raise FetchError(FetchErrorKind.TOO_LARGE, f"{url}: {coding} layer too large")
                yield piece
    except zlib.error as exc:
        raise FetchError(FetchErrorKind.NETWORK, f"{url}: bad {coding} data: {exc}") from exc


def _inflater(coding: str, first: bytes) -> Any:
    """A decompressor for the coding; servers send "deflate" zlib-wrapped (as meant) or bare,
    and httpx reads both, so the first bytes decide."""
    if coding != "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        zlib.decompressobj().decompress(first[:2])
    except zlib.error:
        return zlib.decompressobj(-zlib.MAX_WBITS)
    return zlib.decompressobj()


def _inflate_steps(inflater: Any, data: bytes) -> Iterator[bytes]:
    piece = inflater.decompress(data, DECODE_STEP)
    while piece:
        yield piece
        if not inflater.unconsumed_tail and len(piece) < DECODE_STEP:
            return
        piece = inflater.decompress(inflater.unconsumed_tail, DECODE_STEP)


def _conditional_headers(etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def _lower_keys(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {key.lower(): value for key, value in items}
