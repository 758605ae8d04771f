"""Faults during a live crawl: real worker and beat processes on a throwaway Redis and PostgreSQL
crawl the demo corpus (and the gate site, whose gated page lets a fault strike while a fetch task
is mid-flight). After each fault: every article stored once, clustered, nothing queued or
unacked, story counts and clustering state consistent (LiveCluster.assert_consistent)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from aggregator.models import Article
from tests.scale.live import LiveCluster
from tests.scale.servers import PostgresServer, RedisServer, wait_for

pytestmark = pytest.mark.scale


def test_pool_process_killed_after_commit_before_follow_ups(live: LiveCluster) -> None:
    """The poll and the fetch each die by SIGKILL once, after committing their work and before
    enqueueing what comes next: the redelivered task must still send it on."""
    live.gate.release.set()
    dying = "workers.tasks.fetch_article,workers.tasks.cluster_article"
    live.start_worker("w1", concurrency=1, env={"SCALE_DIE_BEFORE": dying})
    live.wait_ready("w1")
    live.kick()
    live.wait_done()
    live.assert_consistent()
    assert live.log("w1").count("exited with 'signal 9 (SIGKILL)'") == 2


def test_worker_killed_mid_task_its_messages_come_back(live: LiveCluster) -> None:
    """The message of the task the worker was running comes back to another worker after the
    visibility timeout. A message the killed worker had just taken from Redis can be lost with
    it: Kombu's Redis transport pops a message and records it as unacknowledged in two steps
    (celery/celery#7950), and under load about one run in five lost a fetch there. As in
    production, the sweep (every 2 s here, for articles stalled 20 s) sends such an article
    again."""
    running = live.kill_worker_mid_fetch("w1")
    live.start_worker("w2", env={"AGGREGATOR_STALLED_ARTICLE_SECONDS": "20"})
    live.start_beat(SCALE_SWEEP_SECONDS="2")
    live.gate.wait_gated(2, timeout=45)
    live.gate.release.set()
    live.wait_done()
    live.assert_consistent()
    assert f"fetch_article[{running}] received" in live.log("w2")  # that message, not a resend


def test_redis_down_then_back_workers_and_beat_carry_on(
    live: LiveCluster, redis_server: RedisServer
) -> None:
    """A message in flight when Redis stops can go with the connection: in about one run in five
    a fetch was in no queue, unacknowledged by none, received by no worker, and its article stayed
    pending. As in production, the sweep (every 2 s here, for articles stalled 5 s) sends such an
    article again."""
    live.crawl_through_broker_outage(
        redis_server.stop,
        redis_server.start,
        worker_env={"AGGREGATOR_STALLED_ARTICLE_SECONDS": "5"},
        beat_env={"SCALE_SWEEP_SECONDS": "2"},
    )
    live.wait_done()
    live.assert_consistent()


# The worker gives a publish up after 2 quick retries (about a second), not a two-minute wait.
PUBLISH_GIVES_UP_FAST = {"SCALE_PUBLISH_RETRIES": "2"}
# Celery's log lines for a retry that could not be published and for a follow-up that could not
RETRY_PUBLISH_FAILED = re.compile(r"fetch_article\[[^\]]+\] reject requeue=False")
FOLLOW_UP_PUBLISH_FAILED = re.compile(r"fetch_article\[[^\]]+\] raised unexpected: Operational")
SWEEP_RESENT = re.compile(r"resend_stalled_articles\[[^\]]+\] succeeded in \S+: [1-9]")


def fail_the_retry_publish(live: LiveCluster, redis_server: RedisServer) -> None:
    """Stop Redis while the gated fetch is the worker's one task in flight, then let the fetch
    finish: Redis holds its host budget, so the fetch rolls back and retries, and the retry's
    publish (and the reject of the original message) find no broker. The article stays pending."""
    live.wait_only_gated_left()
    redis_server.stop()
    live.gate.release.set()
    wait_for(lambda: bool(RETRY_PUBLISH_FAILED.search(live.log("w1"))), timeout=30, what="retry")


def fail_the_follow_up_publish(live: LiveCluster, redis_server: RedisServer) -> None:
    """Let the gated fetch finish with Redis up but hold its commit on a row lock; stop Redis,
    then let it commit: the fetch's cluster_article finds no broker. The article stays fetched
    and in no story."""
    live.wait_only_gated_left()
    url = live.gate.origin + live.gate.gated
    with Session(live.engine) as session:
        session.exec(select(Article.id).where(Article.url == url).with_for_update()).one()
        live.gate.release.set()
        wait_for(lambda: waiting_for_locks(live.engine) == 1, timeout=30, what="the fetch's commit")
        redis_server.stop()
        session.rollback()
    wait_for(
        lambda: bool(FOLLOW_UP_PUBLISH_FAILED.search(live.log("w1"))), timeout=30, what="follow-up"
    )


def waiting_for_locks(engine: Engine) -> int:
    with engine.connect() as connection:
        query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        return int(connection.execute(text(query)).scalar_one())


def test_redis_down_when_a_fetch_retries_its_message_comes_back(
    live: LiveCluster, redis_server: RedisServer
) -> None:
    """The worker, idle but for one unacked message, outlives the outage (workers.broker_guard);
    Redis back with its data still holds the message the failed retry should have replaced, and
    delivers it again: no sweep needed."""
    live.start_worker("w1", env=PUBLISH_GIVES_UP_FAST)
    live.wait_ready("w1")
    live.kick()
    fail_the_retry_publish(live, redis_server)
    redis_server.start()
    live.wait_done()
    live.assert_consistent()
    assert live.gate.gated_requests == 2  # the held fetch, then its redelivery
    assert SWEEP_RESENT.search(live.log("w1")) is None


@pytest.mark.parametrize(
    ("fail_the_publish", "page_requests"),
    [(fail_the_retry_publish, 2), (fail_the_follow_up_publish, 1)],
    ids=["retry", "follow-up"],
)
def test_redis_lost_when_a_publish_failed_the_sweep_sends_the_article_again(
    live: LiveCluster,
    redis_server: RedisServer,
    fail_the_publish: Callable[[LiveCluster, RedisServer], None],
    page_requests: int,
) -> None:
    """As above, but Redis comes back empty: the publish never happened and the message it
    should have replaced is gone, so only resend_stalled_articles sends the article on (to its
    fetch, or to clustering). Beat and its sweep (every 2 s, for articles stalled 5 s) start
    once Redis is back, so the sweep does not resend the article while the gate holds it."""
    live.start_worker(
        "w1", env={"AGGREGATOR_STALLED_ARTICLE_SECONDS": "5", **PUBLISH_GIVES_UP_FAST}
    )
    live.wait_ready("w1")
    live.kick()
    fail_the_publish(live, redis_server)
    redis_server.forget()
    redis_server.start()
    assert redis.Redis.from_url(redis_server.url).dbsize() == 0  # the message went with the data
    live.start_beat(SCALE_SWEEP_SECONDS="2")
    live.wait_ready("beat")
    live.wait_done()
    live.assert_consistent()
    assert live.gate.gated_requests == page_requests
    assert SWEEP_RESENT.search(live.log("w1"))


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
    live.start_worker("w1", env={"SCALE_DUPLICATE_TASKS": "1"})
    live.start_worker("w2", env={"SCALE_DUPLICATE_TASKS": "1"})
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
