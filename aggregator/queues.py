"""The task queues and how deep they are, read from the broker (Redis lists, or the message
files of the filesystem transport that the server-less default uses)."""

from __future__ import annotations

import os
from pathlib import Path

import redis

from aggregator.settings import Settings

QUEUES = ("polling", "fetching", "clustering", "digest")


def queue_depths(settings: Settings) -> dict[str, int]:
    """Messages waiting per queue; {"all": n} for the filesystem transport, which keeps one
    folder for every queue; {} when the broker cannot be reached."""
    url = settings.effective_broker_url
    if url.startswith(("redis://", "rediss://")):
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return {name: int(client.llen(name)) for name in QUEUES}
        except redis.RedisError:
            return {}
        finally:
            client.close()
    return {"all": _files_in(settings.queue_dir / "messages")}


def _files_in(folder: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(folder) if entry.is_file())
    except OSError:
        return 0
