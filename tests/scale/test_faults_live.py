"""Faults during a live crawl: real worker and beat processes on a throwaway Redis and PostgreSQL
crawl the demo corpus (and the gate site, whose gated page lets a fault strike while a fetch task
is mid-flight). After each fault: every article stored once, clustered, nothing queued or
unacked, story counts and clustering state consistent (LiveCluster.assert_consistent)."""

from __future__ import annotations

import time

import pytest

from tests.scale.live import LiveCluster
from tests.scale.servers import PostgresServer, RedisServer

pytestmark = pytest.mark.scale


def test_pool_process_killed_after_commit_before_follow_ups(live: LiveCluster) -> None:
    """The poll and the fetch each die by SIGKILL once, after committing their work and before
    enqueueing what comes next: the redelivered task must still send it on."""
    live.gate.release.set()
    dying = "workers.tasks.fetch_article,workers.tasks.cluster_article"
    live.start_worker("w1", concurrency=1, SCALE_DIE_BEFORE=dying)
    live.wait_ready("w1")
    live.kick()
    live.wait_done()
    live.assert_consistent()
    assert live.log("w1").count("exited with 'signal 9 (SIGKILL)'") == 2


def test_worker_killed_mid_task_its_messages_come_back(live: LiveCluster) -> None:
    live.start_worker("w1")
    live.wait_ready("w1")
    live.kick()
    live.gate.wait_gated(1)
    live.kill("w1")  # SIGKILL to the worker and its pool: nothing is acked or rejected
    live.start_worker("w2")
    live.gate.wait_gated(2, timeout=45)  # after the visibility timeout, w2 gets the message
    live.gate.release.set()
    live.wait_done()
    live.assert_consistent()


def test_redis_down_then_back_workers_and_beat_carry_on(
    live: LiveCluster, redis_server: RedisServer
) -> None:
    live.gate.gated = "/feed.xml"
    live.start_worker("w1")
    live.start_worker("w2")
    live.start_beat()
    live.wait_ready("w1", "w2", "beat")
    live.gate.wait_gated(1)  # beat's tick started the crawl; the gate feed's poll is mid-flight
    redis_server.stop()
    live.gate.release.set()  # the poll stores its entries, then finds no broker for their fetches
    time.sleep(3)
    redis_server.start()
    live.add_late_feed()  # polled only if beat and a worker came back
    live.wait_done()
    live.assert_consistent()


def test_postgres_restart_tasks_retry_nothing_half_written(
    live: LiveCluster, postgres_server: PostgresServer
) -> None:
    live.start_worker("w1")
    live.start_worker("w2")
    live.wait_ready("w1", "w2")
    live.kick()
    live.gate.wait_gated(1)
    postgres_server.restart()
    live.gate.release.set()
    live.wait_done()
    live.assert_consistent()
    logs = live.log("w1") + live.log("w2")
    assert "retry: Retry in" in logs and "OperationalError" in logs  # the fault hit a task


def test_every_task_delivered_twice_changes_nothing(live: LiveCluster) -> None:
    live.gate.release.set()
    live.start_worker("w1", SCALE_DUPLICATE_TASKS="1")
    live.start_worker("w2", SCALE_DUPLICATE_TASKS="1")
    live.wait_ready("w1", "w2")
    live.kick()
    live.kick()
    live.wait_done()
    live.assert_consistent()
    received = sum(live.log(w).count("workers.tasks.fetch_article[") for w in ("w1", "w2"))
    assert received >= 2 * len(live.expected)  # each fetch message arrived twice


def test_beat_restart_polls_each_feed_once(live: LiveCluster) -> None:
    live.start_worker("w1")
    live.start_beat()
    live.wait_ready("w1", "beat")
    live.gate.wait_gated(1)  # beat's tick started the crawl
    live.kill("beat")
    live.start_beat("beat2")
    live.wait_ready("beat2")
    live.gate.release.set()
    live.add_late_feed()
    live.wait_done()
    live.assert_consistent()
    assert live.gate.hits.count("/feed.xml") == 1
    assert live.gate.hits.count("/late.xml") == 1
