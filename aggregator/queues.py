"""The task queues and how deep they are, read from the broker (Redis lists, or the message
files of the filesystem transport that the server-less default uses)."""

from __future__ import annotations

import os
from pathlib import Path

import redis

from aggregator.settings import Settings

QUEUES = ("polling", "fetching", "clustering", "digest")


def broker_redis(settings: Settings, *, timeout: float) -> redis.Redis | None:
    """A client of the Redis broker, or None when the broker is not Redis."""
    if not settings.broker_is_redis:
        return None
    url = settings.effective_broker_url
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def queue_depths(settings: Settings) -> dict[str, int]:
    """Messages waiting per queue; {"all": n} for the filesystem transport, which keeps one
    folder for every queue; {} when the broker cannot be reached."""
    client = broker_redis(settings, timeout=1)
    if client is not None:
        try:
            return {name: int(client.llen(name)) for name in QUEUES}
        except redis.RedisError:
            return {}
        finally:
            client.close()
    return {"all": _files_in(settings.queue_dir / "messages")}


def redis_backlog(client: redis.Redis) -> int:
    """Messages in the task queues of a Redis broker, every priority list included, plus the
    messages delivered and not yet acknowledged: the work not yet done."""
    waiting = sum(
        int(client.llen(key))
        for queue in QUEUES
        for key in client.scan_iter(match=f"{queue}*")
        if client.type(key) == b"list"
    )
    return waiting + int(client.hlen("unacked"))


def _files_in(folder: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(folder) if entry.is_file())
    except OSError:
        return 0
