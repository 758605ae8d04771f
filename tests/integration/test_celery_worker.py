"""A real Celery worker process on the real Redis broker crawls the demo corpus served on
loopback, storing into a real database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import func
from sqlmodel import select

from aggregator import store, task_stats
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.demo import Corpus, serve_corpus
from aggregator.metrics import pairwise_scores
from aggregator.models import Article
from tests.conftest import REPO

REDIS_URL = os.environ.get("AGGREGATOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def broker_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


def _start_worker(tmp_path: Path, database_url: str, broker_url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    env |= {
        "AGGREGATOR_DATA_DIR": str(tmp_path / "data"),
        "AGGREGATOR_DATABASE_URL": database_url,
        "AGGREGATOR_BROKER_URL": broker_url,
        "AGGREGATOR_FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
        "AGGREGATOR_CLUSTER_SETTLE_SECONDS": "1",
        "AGGREGATOR_CLUSTER_MAX_WAIT_SECONDS": "30",
    }
    command = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker"]
    command += ["-Q", "polling,fetching,clustering", "-c", "2", "--loglevel", "INFO"]
    log = (tmp_path / "worker.log").open("wb")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _clustered(database_url: str) -> int:
    engine = make_engine(database_url)
    with session_scope(engine) as session:
        count = session.exec(select(func.count()).where(Article.story_id.is_not(None))).one()  # type: ignore[union-attr]
    engine.dispose()
    return count


def test_worker_on_redis_crawls_the_corpus(
    tmp_path: Path, database_url: str, broker_url: str
) -> None:
    engine = make_engine(database_url)
    upgrade_database(engine)
    corpus = Corpus.load()
    worker = _start_worker(tmp_path, database_url, broker_url)
    try:
        with serve_corpus(corpus, now=datetime.now(UTC)) as served:
            with session_scope(engine) as session:
                for slug, url in served.feed_urls.items():
                    store.add_source(
                        session=session, url=url, title=served.names[slug], now=datetime.now(UTC)
                    )
            client = Celery("test-client", broker=broker_url)
            client.send_task("workers.tasks.schedule_due_feeds", queue="polling")
            deadline = time.monotonic() + 120
            while (
                _clustered(database_url) < 40
                and time.monotonic() < deadline
                and worker.poll() is None
            ):
                time.sleep(0.5)
            gold = served.served_gold(corpus)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert _clustered(database_url) == 40, log[-3000:]
    with session_scope(engine) as session:
        articles = session.exec(select(Article)).all()
        predicted = {a.url: str(a.story_id) for a in articles}
    assert len(articles) == 40
    assert pairwise_scores(gold, predicted).f1 >= 0.9
    assert "Traceback" not in log
    _assert_structured_logs_and_task_statistics(log, broker_url)


def _assert_structured_logs_and_task_statistics(log: str, broker_url: str) -> None:
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    fetches = [r for r in records if r.get("task") == "workers.tasks.fetch_article"]
    assert fetches and all(isinstance(r["article_id"], int) and r["task_id"] for r in fetches)
    assert {"level", "logger", "message", "timestamp"} <= set(fetches[0])
    polls = [r for r in records if r.get("task") == "workers.tasks.poll_feed"]
    assert polls and all(isinstance(r["source_id"], int) for r in polls)
    client = redis.Redis.from_url(broker_url)
    stats = task_stats.read_task_stats(client)
    client.close()
    clustered = stats[("workers.tasks.cluster_article", "success")]
    assert clustered.runs >= 40 and clustered.seconds > 0
    assert clustered.buckets[max(task_stats.DURATION_BUCKETS)] <= clustered.runs
