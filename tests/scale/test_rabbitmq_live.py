"""RabbitMQ as the broker: a live crawl by real worker processes, with Redis (AGGREGATOR_REDIS_URL)
keeping only the counts every process shares."""

from __future__ import annotations

import pytest
import redis

from aggregator import task_stats
from tests.scale.live import LiveCluster
from tests.scale.test_faults_live import gated_fetch_task

pytestmark = pytest.mark.scale


def test_on_rabbitmq_a_worker_killed_mid_task_loses_nothing_without_the_sweep(
    live_on_rabbitmq: LiveCluster,
) -> None:
    """AMQP gives every unacknowledged delivery back when its consumer's connection dies: the
    message of the fetch the killed worker was running, and any it had taken in advance, go
    to the next worker at once. No sweep runs here (no beat), unlike the Redis test, where
    Kombu's transport can lose a message it had just taken."""
    live = live_on_rabbitmq
    live.start_worker("w1")
    live.wait_ready("w1")
    live.kick()
    live.gate.wait_gated(1)
    running = gated_fetch_task(live)
    live.kill("w1")  # SIGKILL to the worker and its pool: nothing is acked or rejected
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
