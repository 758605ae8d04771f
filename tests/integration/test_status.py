"""`aggregator status`: counts, delays and queue depths from a real store and real brokers."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import redis
from kombu import Connection
from sqlalchemy.engine import Engine

from aggregator.db import session_scope
from aggregator.models import Source, SourceHealth
from aggregator.queues import broker_problem, queue_depths
from aggregator.settings import Settings
from aggregator.status import collect_status, format_status, percentile
from tests.conftest import Invoke, new_rabbitmq_vhost
from tests.stored import NOW, add_extracted_article

STATUS_DB = "redis://127.0.0.1:6379/12"  # a database of its own: the real queues stay untouched


def test_percentile_is_the_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95)) == (50.0, 95.0)
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_status_counts_recent_work_and_delays(engine: Engine) -> None:
    with session_scope(engine) as session:
        for minutes, delay in ((10, 60), (30, 300), (600, 3600), (3000, 60)):
            article = add_extracted_article(session, f"s{minutes}", f"T{minutes}", "text")
            article.discovered_at = NOW - timedelta(minutes=minutes)
            article.published_at = article.discovered_at - timedelta(seconds=delay)
        blocked = session.get(Source, article.source_id)
        assert blocked is not None
        blocked.health = SourceHealth.BLOCKED.value
    with session_scope(engine) as session:
        status = collect_status(session=session, now=NOW, queues={"fetching": 3})
    assert status.articles == {"hour": 2, "day": 3}  # the fourth is two days old
    assert status.delay_seconds == {"p50": 300.0, "p95": 3600.0}
    assert status.sources_by_health == {"new": 3, "blocked": 1}
    text = format_status(status)
    assert "2 last hour, 3 last day" in text and "p50 5 min" in text and "p95 60 min" in text
    assert "fetching" in text


def test_queue_depths_from_redis_and_from_the_queue_folder(tmp_path: Path) -> None:
    client = redis.Redis.from_url(STATUS_DB)
    client.delete("fetching", "polling")
    client.rpush("fetching", "a", "b", "c")
    try:
        on_redis = Settings(_env_file=None, broker_url=STATUS_DB, data_dir=tmp_path)
        assert queue_depths(on_redis) == {"polling": 0, "fetching": 3, "clustering": 0, "digest": 0}
    finally:
        client.delete("fetching")
        client.close()
    on_files = Settings(_env_file=None, data_dir=tmp_path)
    (tmp_path / "queue" / "messages").mkdir(parents=True)
    for index in range(2):
        (tmp_path / "queue" / "messages" / f"m{index}.msg").write_text("{}")
    assert queue_depths(on_files) == {"all": 2}
    unreachable = Settings(_env_file=None, broker_url="redis://127.0.0.1:1/0", data_dir=tmp_path)
    assert queue_depths(unreachable) == {}


def test_queue_depths_from_rabbitmq(tmp_path: Path) -> None:
    with new_rabbitmq_vhost() as broker_url:
        with Connection(broker_url) as broker:
            waiting = broker.SimpleQueue("fetching")  # declared as Celery declares its queues
            for index in range(2):
                waiting.put({"article": index})
            waiting.close()
        on_rabbitmq = Settings(_env_file=None, broker_url=broker_url, data_dir=tmp_path)
        # polling was never declared: no worker has started yet, so nothing waits there
        assert queue_depths(on_rabbitmq) == {
            "polling": 0,
            "fetching": 2,
            "clustering": 0,
            "digest": 0,
        }
        assert broker_problem(on_rabbitmq) is None
    for url, problem in (
        ("amqp://guest:guest@127.0.0.1:1//", "broker: ConnectionRefusedError"),
        (broker_url.replace("guest:guest", "guest:wrong"), "broker: AccessRefused"),
    ):
        unreachable = Settings(_env_file=None, broker_url=url, data_dir=tmp_path)
        assert (queue_depths(unreachable), broker_problem(unreachable)) == ({}, problem)


def test_status_command_prints_json(run: Invoke) -> None:
    result = run("status", "--json")
    report = json.loads(result.output)
    assert report["articles"] == {"hour": 0, "day": 0}
    assert report["delay_seconds"] == {"p50": None, "p95": None}
    assert report["queues"] == {"all": 0}
