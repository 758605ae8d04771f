"""Prometheus metrics of the API process: request latencies observed here, and the state of the
store and the queue read at each scrape (so the figures hold for every worker process too)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import redis
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from aggregator import queries, task_stats
from aggregator.db import session_scope
from aggregator.models import Article, Source
from aggregator.queues import queue_depths, shared_redis
from aggregator.settings import Settings

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class StoreCollector(Collector):
    """Gauges read from the database and the broker when scraped."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        try:
            with session_scope(self.engine) as session:
                articles = queries.counts_by(session=session, column=Article.extraction_status)
                sources = queries.counts_by(session=session, column=Source.health)
                failing = queries.failing_sources_by_health(session=session)
                polled = queries.sources_polled_since(
                    session=session, since=now - timedelta(hours=1)
                )
                stories = queries.story_count(session=session)
        except SQLAlchemyError:
            yield GaugeMetricFamily("aggregator_store_up", "The database answers.", 0)
            return
        yield GaugeMetricFamily("aggregator_store_up", "The database answers.", 1)
        yield _labelled("aggregator_articles", "Articles by extraction status.", "status", articles)
        yield _labelled("aggregator_sources", "Sources by health.", "health", sources)
        yield _labelled(
            "aggregator_source_errors",
            "Sources whose last poll failed, by kind (health after the error).",
            "kind",
            failing,
        )
        yield GaugeMetricFamily(
            "aggregator_sources_polled_last_hour", "Sources polled in the last hour.", polled
        )
        yield GaugeMetricFamily("aggregator_stories", "Stories (merged ones not counted).", stories)
        yield _labelled(
            "aggregator_queue_depth",
            "Messages waiting in the broker.",
            "queue",
            queue_depths(self.settings),
        )
        yield from self.task_families()

    def task_families(self) -> Iterator[Metric]:
        """Outcomes and durations of the workers' tasks, counted in Redis by every worker."""
        client = shared_redis(self.settings, timeout=1)
        if client is None:
            return
        try:
            stats = task_stats.read_task_stats(client)
        except redis.RedisError:
            return
        finally:
            client.close()
        runs = CounterMetricFamily(
            "aggregator_task_runs", "Finished task runs by outcome.", labels=["task", "outcome"]
        )
        durations = HistogramMetricFamily(
            "aggregator_task_duration_seconds",
            "Task run durations by outcome.",
            labels=["task", "outcome"],
        )
        for (task, outcome), entry in sorted(stats.items()):
            runs.add_metric([task, outcome], entry.runs)
            buckets = [(str(b), entry.buckets.get(b, 0)) for b in task_stats.DURATION_BUCKETS]
            durations.add_metric(
                [task, outcome], [*buckets, ("+Inf", entry.runs)], sum_value=entry.seconds
            )
        yield runs
        yield durations


def _labelled(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def make_registry(engine: Engine, settings: Settings) -> tuple[CollectorRegistry, Histogram]:
    """A registry of the app: its request latency histogram and the store collector."""
    registry = CollectorRegistry()
    latency = Histogram(
        "aggregator_http_request_duration_seconds",
        "Latency of HTTP requests by route, method and status.",
        ["route", "method", "status"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    registry.register(StoreCollector(engine, settings))
    return registry, latency
