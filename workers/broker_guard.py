"""A guard for a kombu (5.7) bug that kills a worker when Redis goes away.

When the worker's broker connection drops while it waits for messages and still holds an
unacknowledged one (a task in flight), Celery collects the connection, which detaches kombu's
transport from it, and then closes the channel again. That second close tries to put the unacked
message back, builds a new Redis pool from the detached transport and raises AttributeError
(`'NoneType' object has no attribute 'hostname'`): not a connection error, so the worker's main
process dies ("Unrecoverable error"). A late ack on such a channel fails the same way.

The guard turns that into the connection error it is, which Celery handles: the failed restore
is ignored like any error while closing a lost connection, the ack is logged as failed, and Redis
hands the unacked message out again after the visibility timeout. The live fault tests
(tests/scale/test_faults_live.py, "redis_down_when_a_fetch_retries") fail without it.

The same traceback was reported upstream as celery/kombu#582 ("Error on restarting Gossip").
Remove this module once kombu raises a connection error there itself.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as redis_transport
from redis.exceptions import ConnectionError as RedisConnectionError

_connparams = redis_transport.Channel._connparams  # type: ignore[attr-defined]


def _connparams_of_attached_channel(channel: Any, asynchronous: bool = False) -> Any:
    if channel.connection.client is None:
        raise RedisConnectionError("the channel's broker connection was closed")
    return _connparams(channel, asynchronous=asynchronous)


def install() -> None:
    redis_transport.Channel._connparams = _connparams_of_attached_channel  # type: ignore[attr-defined]
