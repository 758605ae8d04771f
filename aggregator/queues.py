"""The broker as operators see it: how deep the task queues are and whether it answers. Read from
Redis lists, from RabbitMQ (a passive queue declaration), or from the message files of the
filesystem transport that the server-less default uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import redis
from amqp.exceptions import AMQPError, NotFound
from kombu import Connection
from kombu.exceptions import OperationalError

from aggregator.settings import Settings

QUEUES = ("polling", "fetching", "clustering", "digest")


def broker_redis(settings: Settings, *, timeout: float) -> redis.Redis | None:
    """A client of the Redis broker, or None when the broker is not Redis."""
    if not settings.broker_is_redis:
        return None
    return _redis(settings.effective_broker_url, timeout)


def shared_redis(settings: Settings, *, timeout: float) -> redis.Redis | None:
    """A client of the Redis that keeps the counts every process shares, or None without one."""
    return _redis(settings.shared_redis_url, timeout) if settings.shared_redis_url else None


def _redis(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def queue_depths(settings: Settings) -> dict[str, int]:
    """Messages waiting per queue; {"all": n} for the filesystem transport, which keeps one
    folder for every queue; {} when the broker cannot be reached."""
    if settings.broker_is_amqp:
        return _amqp_depths(settings.effective_broker_url)
    client = broker_redis(settings, timeout=1)
    if client is not None:
        try:
            return {name: int(client.llen(name)) for name in QUEUES}
        except redis.RedisError:
            return {}
        finally:
            client.close()
    return {"all": _files_in(settings.queue_dir / "messages")}


def _amqp_depths(url: str) -> dict[str, int]:
    """Ready messages per queue in RabbitMQ (0 for a queue no worker has declared yet)."""
    depths = {}
    try:
        with Connection(url, connect_timeout=1) as broker:
            broker.ensure_connection(max_retries=0)  # once: a status page must not wait
            for name in QUEUES:
                channel: Any = broker.channel()  # py-amqp's; a failed declaration closes it
                try:
                    depths[name] = channel.queue_declare(queue=name, passive=True).message_count
                except NotFound:
                    depths[name] = 0
                finally:
                    channel.close()
    except (OSError, OperationalError, AMQPError):
        return {}
    return depths


def broker_problem(settings: Settings) -> str | None:
    """None when the broker answers; otherwise what is wrong."""
    if settings.broker_is_amqp:
        return _amqp_problem(settings.effective_broker_url)
    client = broker_redis(settings, timeout=2)
    if client is not None:
        return _redis_problem(client)
    return _folder_problem(settings.queue_dir / "messages")


def _redis_problem(client: redis.Redis) -> str | None:
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"broker: {type(exc).__name__}"
    finally:
        client.close()
    return None


def _folder_problem(folder: Path) -> str | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"broker: queue folder: {exc.strerror}"
    return None if os.access(folder, os.W_OK) else "broker: queue folder is not writable"


def _amqp_problem(url: str) -> str | None:
    try:
        with Connection(url, connect_timeout=2) as broker:
            broker.ensure_connection(max_retries=0)
    except (OSError, OperationalError, AMQPError) as exc:
        return f"broker: {type(exc.__cause__ or exc).__name__}"
    return None


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
