"""RabbitMQ as the broker: a live crawl by real worker processes, with Redis (AGGREGATOR_REDIS_URL)
keeping only the counts every process shares."""

from __future__ import annotations

import pytest
import redis

from aggregator import task_stats
from tests.scale.live import LiveCluster
from tests.scale.servers import RabbitServer

pytestmark = pytest.mark.scale


def test_on_rabbitmq_a_worker_killed_mid_task_loses_nothing_without_the_sweep(
    live_on_rabbitmq: LiveCluster,
) -> None:
    """AMQP gives every unacknowledged delivery back when its consumer's connection dies: the
    message of the fetch the killed worker was running, and any it had taken in advance, go
    to the next worker at once. No sweep runs here (no beat), unlike the Redis test, where
    Kombu's transport can lose a message it had just taken."""
    live = live_on_rabbitmq
    running = live.kill_worker_mid_fetch("w1")
    live.start_worker("w2")
    live.gate.wait_gated(2, timeout=45)
    live.gate.release.set()
    live.wait_done()
    live.assert_consistent()
    assert f"fetch_article[{running}] received" in live.log("w2")  # that message, not a resend
    counts = redis.Redis.from_url(live.redis_url)
    try:
        fetched = task_stats.read_task_stats(counts)[("workers.tasks.fetch_article", "success")]
    finally:
        counts.close()
    assert fetched.runs >= len(live.expected)  # both workers counted in the shared Redis


def test_rabbitmq_restart_workers_and_beat_carry_on_without_the_sweep(
    live_on_own_rabbitmq: LiveCluster, rabbit_server: RabbitServer
) -> None:
    """RabbitMQ stops while a poll is mid-flight and starts again. Its durable queues keep every
    persistent message, the unacknowledged ones included, and the workers and beat reconnect.
    The follow-up publishes that meet the outage wait for the broker, also when Kombu needs a new
    channel for them (workers.celery_app.amqp_failover_options): no task fails. No sweep runs,
    unlike the Redis test, where a message in flight can be lost."""
    live = live_on_own_rabbitmq
    live.crawl_through_broker_outage(rabbit_server.stop, rabbit_server.start)
    live.wait_done(timeout=120)
    live.assert_consistent()
    for worker in ("w1", "w2"):
        assert "raised unexpected" not in live.log(worker)
