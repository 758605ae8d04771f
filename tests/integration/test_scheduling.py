"""Poll leases, the watchdog, per-host politeness, robots.txt and feed discovery, on SQLite and
PostgreSQL with a real loopback server."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy.engine import Engine
from sqlmodel import select

from aggregator import pipeline, store
from aggregator.db import session_scope
from aggregator.feeds import FeedError
from aggregator.fetch import Fetcher, FetchError, FetchErrorKind, FetchResult
from aggregator.models import Article, Source
from aggregator.politeness import LocalHostLimiter, RedisHostLimiter
from aggregator.settings import Settings
from tests.conftest import FixtureSite
from tests.integration.test_faults import GOOD

NOW = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)
RSS = '<rss version="2.0"><channel><title>T</title><item><guid>g1</guid><title>A</title><link>{}</link><description>Summary A</description></item></channel></rss>'


def _add(engine: Engine, url: str, next_poll_at: datetime = NOW) -> int:
    with session_scope(engine) as session:
        source, _ = store.add_source(session=session, url=url, now=NOW)
        source.next_poll_at = next_poll_at
        return source.id or 0


def _schedule(engine: Engine, settings: Settings, now: datetime) -> list[tuple[int, datetime]]:
    with session_scope(engine) as session:
        return pipeline.schedule_due_feeds(session=session, settings=settings, now=now)


def test_due_sources_are_claimed_once_oldest_first(engine: Engine, settings: Settings) -> None:
    late = _add(engine, "https://a.example/1", NOW - timedelta(minutes=1))
    early = _add(engine, "https://a.example/2", NOW - timedelta(hours=1))
    _add(engine, "https://a.example/3", NOW + timedelta(hours=1))  # not due
    assert _schedule(engine, settings, NOW) == [(early, NOW), (late, NOW)]
    assert _schedule(engine, settings, NOW + timedelta(minutes=1)) == []  # leases held
    # the watchdog: a poll in flight for more than 10 minutes is queued again
    later = NOW + timedelta(minutes=11)
    assert _schedule(engine, settings, later) == [(early, later), (late, later)]


def test_racing_schedulers_claim_each_source_once(engine: Engine, settings: Settings) -> None:
    ids = [_add(engine, f"https://a.example/{i}") for i in range(20)]
    results: list[list[tuple[int, datetime]]] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        results.append(_schedule(engine, settings, NOW))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = sorted(source_id for batch in results for source_id, _ in batch)
    assert claimed == ids


def test_a_redelivered_poll_does_nothing_and_a_lost_lease_rolls_back(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    url = site.serve("/feed", RSS.format(site.url("/a")))
    source_id = _add(engine, url)
    ((_, lease),) = _schedule(engine, settings, NOW)
    fetcher = Fetcher(settings)

    def poll(lease: datetime) -> pipeline.PollOutcome:
        with session_scope(engine) as session:
            return pipeline.poll_feed(
                source_id, session=session, fetcher=fetcher, settings=settings, now=NOW, lease=lease
            )

    assert len(poll(lease).new_article_ids) == 1
    assert poll(lease).status == "skipped"  # the same message delivered again
    with session_scope(engine) as session:
        assert len(session.exec(select(Article)).all()) == 1
        source = session.get(Source, source_id)
        assert source is not None and source.poll_started_at is None
        source.next_poll_at = NOW
    fetcher.close()


def test_a_poll_that_lost_its_lease_commits_nothing(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    url = site.serve("/feed", RSS.format(site.url("/a")))
    source_id = _add(engine, url)
    ((_, lease),) = _schedule(engine, settings, NOW)

    class TakenOverMeanwhile(Fetcher):
        def fetch(self, url: str, **kwargs: Any) -> FetchResult:
            with session_scope(engine) as other:  # the watchdog re-queues the source
                source = other.get(Source, source_id)
                assert source is not None
                source.poll_started_at = NOW + timedelta(minutes=11)
            return super().fetch(url, **kwargs)

    fetcher = TakenOverMeanwhile(settings)
    with pytest.raises(pipeline.LeaseLost), session_scope(engine) as session:
        pipeline.poll_feed(
            source_id, session=session, fetcher=fetcher, settings=settings, now=NOW, lease=lease
        )
    with session_scope(engine) as session:
        assert session.exec(select(Article)).all() == []
    fetcher.close()


# ---------------------------------------------------------------- politeness


def test_a_host_over_budget_defers_the_poll(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    url = site.serve("/feed", RSS.format(site.url("/a")))
    source_id = _add(engine, url)
    fetcher = Fetcher(settings, limiter=LocalHostLimiter(per_minute=0 + 1, concurrent=2))
    with session_scope(engine) as session:
        first = pipeline.poll_feed(
            source_id, session=session, fetcher=fetcher, settings=settings, now=NOW
        )
    with session_scope(engine) as session:
        second = pipeline.poll_feed(
            source_id, session=session, fetcher=fetcher, settings=settings, now=NOW
        )
        source = session.get(Source, source_id)
        assert source is not None
        assert source.health == "ok" and source.consecutive_errors == 0
        assert NOW + timedelta(seconds=60) <= source.next_poll_at <= NOW + timedelta(seconds=76)
    assert (first.status, second.status) == ("new", "deferred")
    assert site.hits == ["/feed"]
    fetcher.close()


class RefusingLimiter:
    """A host budget that is always spent, recording the hosts asked for."""

    def __init__(self) -> None:
        self.hosts: list[str] = []

    def acquire(self, host: str) -> str | None:
        self.hosts.append(host)
        return None

    def release(self, host: str, token: str) -> None:
        raise AssertionError("nothing was acquired")


class UnreachableLimiter(RefusingLimiter):
    """The per-host budget lives in a Redis that is down."""

    def acquire(self, host: str) -> str | None:
        raise redis.exceptions.ConnectionError("Redis is down")


def test_a_redis_outage_during_a_poll_is_retried_not_recorded_against_the_source(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    url = site.serve("/feed", RSS.format(site.url("/a")))
    source_id = _add(engine, url)
    fetcher = Fetcher(settings, limiter=UnreachableLimiter())
    with pytest.raises(redis.exceptions.ConnectionError), session_scope(engine) as session:
        pipeline.poll_feed(source_id, session=session, fetcher=fetcher, settings=settings, now=NOW)
    with session_scope(engine) as session:
        source = session.get(Source, source_id)
        assert source is not None
        assert (source.consecutive_errors, source.last_error, source.health) == (0, None, "new")
    assert site.hits == []
    fetcher.close()


def test_one_host_has_one_budget_however_its_name_is_written(settings: Settings) -> None:
    limiter = RefusingLimiter()
    fetcher = Fetcher(settings, limiter=limiter)
    for url in ("http://news.example/a", "http://NEWS.example./b", "http://news.example.:80/c"):
        with pytest.raises(FetchError) as refused:
            fetcher.fetch(url, max_bytes=100)
        assert refused.value.kind is FetchErrorKind.HOST_BUSY
    assert set(limiter.hosts) == {"news.example"}
    fetcher.close()


@pytest.mark.redis
def test_the_redis_budget_is_shared_by_every_process() -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/13")
    prefix = f"test:{datetime.now(UTC).timestamp()}:"
    a, b = (
        RedisHostLimiter(client, per_minute=3, concurrent=2, slot_seconds=30, prefix=prefix)
        for _ in range(2)
    )
    first, second = a.acquire("h"), b.acquire("h")
    assert first and second
    assert a.acquire("h") is None  # two in flight
    b.release("h", second)
    assert b.acquire("h") is not None  # third request this minute
    a.release("h", first)
    assert a.acquire("h") is None  # fourth: over the per-minute budget
    assert a.acquire("other") is not None
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def test_a_busy_host_delays_a_page_without_using_up_its_attempts(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    """A large backlog from one host is fetched at the host's pace: a page whose host has no
    budget left waits, even on its last attempt, and is neither failed nor dropped."""
    site.serve("/a", "<html><body><article><p>" + "Snow closed the pass. " * 30 + "</p>")
    source_id = _add(engine, site.serve("/feed", RSS.format(site.url("/a"))))
    clock = [0.0]
    limiter = LocalHostLimiter(per_minute=2, concurrent=1, clock=lambda: clock[0])
    fetcher = Fetcher(settings, limiter=limiter)
    with session_scope(engine) as session:
        (article_id,) = pipeline.poll_feed(  # with robots.txt, spends the budget
            source_id, session=session, fetcher=fetcher, settings=settings, now=NOW
        ).new_article_ids

    def fetch() -> bool:
        with session_scope(engine) as session:
            return pipeline.fetch_article(
                article_id, session=session, fetcher=fetcher, settings=settings, now=NOW
            )  # the default: the final attempt

    with pytest.raises(pipeline.RetryLater) as busy:
        fetch()
    assert busy.value.failed is False
    assert busy.value.countdown is not None and busy.value.countdown >= settings.poll_defer_seconds
    with session_scope(engine) as session:
        article = session.get(Article, article_id)
        assert article is not None and article.extraction_status == "pending"
    clock[0] += 61  # the budget refills
    assert fetch() is True
    with session_scope(engine) as session:
        article = session.get(Article, article_id)
        assert article is not None and article.extraction_status == "extracted"
        assert "Snow closed the pass." in article.text
    fetcher.close()


# ---------------------------------------------------------------- robots.txt


def test_robots_txt_is_honoured_for_pages_and_cached(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    site.serve("/robots.txt", "User-agent: news-aggregator\nDisallow: /private/\n")
    site.serve("/private/a", "<html><body><p>secret</p></body></html>")
    url = site.serve("/private/feed", RSS.format(site.url("/private/a")))
    source_id = _add(engine, url)
    fetcher = Fetcher(settings)
    with session_scope(engine) as session:  # the feed itself is fetched regardless
        (article_id,) = pipeline.poll_feed(
            source_id, session=session, fetcher=fetcher, settings=settings, now=NOW
        ).new_article_ids
    with session_scope(engine) as session:
        pipeline.fetch_article(
            article_id, session=session, fetcher=fetcher, settings=settings, now=NOW
        )
        article = session.get(Article, article_id)
        assert article is not None
        assert article.extraction_status == "summary"
        assert article.fetch_error is not None
        assert article.fetch_error.endswith("/private/a is disallowed by robots.txt")
    assert fetcher.robots_allow(site.url("/public/x"))
    assert site.hits.count("/robots.txt") == 1 and "/private/a" not in site.hits
    fetcher.close()


def test_robots_txt_is_checked_where_a_redirect_leads(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    site.serve("/robots.txt", "User-agent: *\nDisallow: /private/\n")
    site.serve("/private/a", "<html><body><p>secret</p></body></html>")
    hop = site.serve("/go/a", "", status=302, headers={"Location": "/private/a"})
    source_id = _add(engine, site.serve("/feed", RSS.format(hop)))
    fetcher = Fetcher(settings)
    with session_scope(engine) as session:
        (article_id,) = pipeline.poll_feed(
            source_id, session=session, fetcher=fetcher, settings=settings, now=NOW
        ).new_article_ids
    with session_scope(engine) as session:
        pipeline.fetch_article(
            article_id, session=session, fetcher=fetcher, settings=settings, now=NOW
        )
        article = session.get(Article, article_id)
        assert article is not None and article.fetch_error is not None
        assert article.extraction_status == "summary"
        assert "/private/a is disallowed by robots.txt" in article.fetch_error
    assert "/go/a" in site.hits and "/private/a" not in site.hits
    fetcher.close()


# ---------------------------------------------------------------- feed discovery


def test_discovery_finds_the_announced_feed(settings: Settings, site: FixtureSite) -> None:
    feed = site.serve("/feeds/main.xml", GOOD)
    site.serve(
        "/",
        '<html><head><link rel="alternate" type="application/atom+xml" href="/feeds/main.xml">'
        "</head><body>Home</body></html>",
        headers={"Content-Type": "text/html"},
    )
    fetcher = Fetcher(settings)
    assert pipeline.discover_feed(site.url("/"), fetcher=fetcher, settings=settings) == feed
    assert pipeline.discover_feed(feed, fetcher=fetcher, settings=settings) == feed
    fetcher.close()


def test_discovery_tries_common_paths(settings: Settings, site: FixtureSite) -> None:
    site.serve("/", "<html><body>No links here</body></html>")
    feed = site.serve("/rss.xml", GOOD)
    fetcher = Fetcher(settings)
    assert pipeline.discover_feed(site.url("/"), fetcher=fetcher, settings=settings) == feed
    site.routes.pop("/rss.xml")
    with pytest.raises(FeedError):
        pipeline.discover_feed(site.url("/"), fetcher=fetcher, settings=settings)
    fetcher.close()
