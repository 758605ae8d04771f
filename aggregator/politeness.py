"""Per-host politeness: at most N requests a minute and M in flight at once, per host.

Shared by every worker through Redis (`Settings.shared_redis_url`: the Redis broker, or
`AGGREGATOR_REDIS_URL` beside another broker); otherwise kept in this process (enough for
`aggregator crawl`, the demo and a single worker process)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Protocol

import redis

from aggregator.settings import Settings

WINDOW_SECONDS = 60.0


class HostLimiter(Protocol):
    def acquire(self, host: str) -> str | None:
        """A token for one request to host, or None when the host is over its budget."""

    def release(self, host: str, token: str) -> None:
        """The request is over."""


class LocalHostLimiter:
    """In-process limiter (threads share it; processes do not)."""

    def __init__(
        self, per_minute: int, concurrent: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._per_minute, self._concurrent, self._clock = per_minute, concurrent, clock
        self._lock = threading.Lock()
        self._starts: dict[str, deque[float]] = {}
        self._in_flight: dict[str, set[str]] = {}

    def acquire(self, host: str) -> str | None:
        with self._lock:
            now = self._clock()
            starts = self._starts.setdefault(host, deque())
            while starts and starts[0] <= now - WINDOW_SECONDS:
                starts.popleft()
            in_flight = self._in_flight.setdefault(host, set())
            if len(starts) >= self._per_minute or len(in_flight) >= self._concurrent:
                return None
            token = uuid.uuid4().hex
            starts.append(now)
            in_flight.add(token)
            return token

    def release(self, host: str, token: str) -> None:
        with self._lock:
            self._in_flight.get(host, set()).discard(token)


# KEYS: request log (sorted set of start times), slots in flight (sorted set of expiry times).
# ARGV: per minute, concurrent, slot lifetime in ms (a crashed worker's slot expires), token.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], 60000)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
return 1
"""


class RedisHostLimiter:
    """The same budget shared by every process that talks to this Redis."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        per_minute: int,
        concurrent: int,
        slot_seconds: float,
        prefix: str = "aggregator:host:",
    ) -> None:
        self._client, self._prefix = client, prefix
        self._args = (per_minute, concurrent, int(slot_seconds * 1000))
        self._acquire = client.register_script(_ACQUIRE)

    def acquire(self, host: str) -> str | None:
        token = uuid.uuid4().hex
        keys = [f"{self._prefix}{host}:log", f"{self._prefix}{host}:slots"]
        granted = self._acquire(keys=keys, args=[*self._args, token])
        return token if granted else None

    def release(self, host: str, token: str) -> None:
        self._client.zrem(f"{self._prefix}{host}:slots", token)


def make_host_limiter(settings: Settings) -> HostLimiter:
    """In the shared Redis if there is one, else in this process."""
    if settings.shared_redis_url:
        return RedisHostLimiter(
            redis.Redis.from_url(settings.shared_redis_url),
            per_minute=settings.host_requests_per_minute,
            concurrent=settings.host_max_concurrent,
            slot_seconds=settings.fetch_timeout + 30,
        )
    return LocalHostLimiter(settings.host_requests_per_minute, settings.host_max_concurrent)
