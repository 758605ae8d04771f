"""The only HTTP client: timeouts, size caps, conditional GET, redirects and the address guard."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urljoin, urlsplit

import httpx

from aggregator.settings import Settings
from aggregator.urls import IpAddress, IpNetwork, is_address_allowed

Resolver = Callable[[str, int], list[IpAddress]]
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class FetchErrorKind(StrEnum):
    BAD_URL = "bad_url"
    BLOCKED_ADDRESS = "blocked_address"
    DNS = "dns"
    TIMEOUT = "timeout"
    NETWORK = "network"
    TOO_LARGE = "too_large"
    TOO_MANY_REDIRECTS = "too_many_redirects"


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


class Fetcher:
    """GETs with the service's limits. Safe for reuse across many requests; close() when done."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: Resolver = resolve_host,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._allowed: list[IpNetwork] = list(settings.fetch_allow_networks)
        self._max_redirects = settings.fetch_max_redirects
        self._resolve = resolver
        timeout = httpx.Timeout(settings.fetch_timeout, connect=settings.fetch_connect_timeout)
        self._client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": settings.user_agent_header},
            transport=transport,
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
    ) -> FetchResult:
        """GET url, following redirects hop by hop, each hop checked against the address guard."""
        headers = _conditional_headers(etag, last_modified)
        redirects: list[tuple[int, str]] = []
        current = url
        while True:
            self.check_url(current)
            status, response_headers, body = self._get_once(current, headers, max_bytes)
            location = response_headers.get("location")
            if status not in REDIRECT_STATUSES or not location:
                return FetchResult(current, status, body, response_headers, redirects)
            if len(redirects) >= self._max_redirects:
                raise FetchError(
                    FetchErrorKind.TOO_MANY_REDIRECTS, f"more than {self._max_redirects}"
                )
            current = urljoin(current, location)
            redirects.append((status, current))

    def check_url(self, url: str) -> None:
        """Refuse anything but http(s) to hosts whose every address the guard allows."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(FetchErrorKind.BAD_URL, f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = self._resolve(parts.hostname, port)
        blocked = [a for a in addresses if not is_address_allowed(a, self._allowed)]
        if blocked or not addresses:
            raise FetchError(
                FetchErrorKind.BLOCKED_ADDRESS,
                f"{parts.hostname} resolves to {blocked or 'nothing'}",
            )

    def _get_once(
        self, url: str, headers: Mapping[str, str], max_bytes: int
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                body = _read_capped(response.iter_bytes(), max_bytes, url)
                return response.status_code, _lower_keys(response.headers.items()), body
        except httpx.TimeoutException as exc:
            raise FetchError(FetchErrorKind.TIMEOUT, f"{url}: {type(exc).__name__}") from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise FetchError(FetchErrorKind.NETWORK, f"{url}: {type(exc).__name__}: {exc}") from exc


def _read_capped(chunks: Iterable[bytes], max_bytes: int, url: str) -> bytes:
    """The decompressed body, stopping as soon as it passes max_bytes."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(FetchErrorKind.TOO_LARGE, f"{url}: body over {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _conditional_headers(etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def _lower_keys(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {key.lower(): value for key, value in items}
