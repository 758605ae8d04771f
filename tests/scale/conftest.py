"""The live fault tests' deployment: throwaway Redis, PostgreSQL and RabbitMQ, the demo corpus and
the gate site served on loopback, their feeds registered; every process killed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.db import make_engine, upgrade_database
from aggregator.demo import Corpus, serve_corpus
from tests.conftest import new_rabbitmq_vhost
from tests.scale.live import LiveCluster, serve_gate
from tests.scale.servers import PostgresServer, RabbitServer, RedisServer, running


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    with running(RedisServer(folder)) as server:
        yield server


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    with running(PostgresServer()) as server:
        yield server


@pytest.fixture
def live(
    tmp_path: Path, redis_server: RedisServer, postgres_server: PostgresServer
) -> Iterator[LiveCluster]:
    with live_cluster(tmp_path, postgres_server, redis_server.url) as cluster:
        yield cluster


@pytest.fixture
def live_on_rabbitmq(
    tmp_path: Path, redis_server: RedisServer, postgres_server: PostgresServer
) -> Iterator[LiveCluster]:
    """RabbitMQ (a virtual host of the local server) as the broker, the throwaway Redis for
    the shared counts only."""
    with (
        new_rabbitmq_vhost() as broker_url,
        live_cluster(tmp_path, postgres_server, broker_url, redis_server.url) as cluster,
    ):
        yield cluster


@pytest.fixture
def rabbit_server() -> Iterator[RabbitServer]:
    with running(RabbitServer()) as server:
        yield server


@pytest.fixture
def live_on_own_rabbitmq(
    tmp_path: Path,
    rabbit_server: RabbitServer,
    redis_server: RedisServer,
    postgres_server: PostgresServer,
) -> Iterator[LiveCluster]:
    """A throwaway RabbitMQ node as the broker, so that the test can stop and restart it."""
    with live_cluster(tmp_path, postgres_server, rabbit_server.url, redis_server.url) as cluster:
        cluster.rabbitmq_node = rabbit_server.node
        yield cluster


@contextmanager
def live_cluster(
    folder: Path, postgres_server: PostgresServer, broker_url: str, redis_url: str = ""
) -> Iterator[LiveCluster]:
    database_url = postgres_server.create_database("aggregator")
    engine = make_engine(database_url)
    upgrade_database(engine)
    corpus = Corpus.load()
    with serve_corpus(corpus, now=datetime.now(UTC)) as served, serve_gate() as gate:
        cluster = LiveCluster(folder, database_url, broker_url, engine, gate, redis_url)
        cluster.gold = served.served_gold(corpus)
        cluster.expected = set(cluster.gold) | set(gate.article_urls("/feed.xml"))
        feeds = {url: served.names[slug] for slug, url in served.feed_urls.items()}
        cluster.add_sources(feeds | {gate.origin + "/feed.xml": "Gate"})
        try:
            yield cluster
        finally:
            cluster.close()
            engine.dispose()
