"""The demo corpus served over real HTTP: seed extraction, date shifting, and a second crawl
that adds nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import select

from aggregator import store
from aggregator.db import session_scope
from aggregator.demo import Corpus, serve_corpus, shift_dates
from aggregator.extract import extract_article
from aggregator.feeds import parse_feed
from aggregator.fetch import Fetcher
from aggregator.models import Article, Source, Story
from aggregator.settings import Settings
from tests.demo_corpus import SEED_TEXT, SEED_URL, token_f1
from workers.celery_app import build_runtime, use_runtime
from workers.inprocess import crawl_due_sources

NOW = datetime(2026, 3, 1, 15, 42, 10, tzinfo=UTC)
CORPUS = Corpus.load()


@pytest.fixture
def fetcher(settings: Settings) -> Iterator[Fetcher]:
    fetcher = Fetcher(settings)
    yield fetcher
    fetcher.close()


def test_seed_page_over_http_extracts_to_the_seed_text(fetcher: Fetcher) -> None:
    with serve_corpus(CORPUS, now=NOW) as served:
        origin = served.origins["https://meridian-herald.example"]
        page = fetcher.fetch(
            SEED_URL.replace("https://meridian-herald.example", origin), max_bytes=10**6
        )
    extracted = extract_article(page.body, url=page.url)
    assert extracted is not None
    assert token_f1(extracted.text, SEED_TEXT) >= 0.95
    assert extracted.title == "Putin says parts of US peace plan are unacceptable to Moscow"
    assert extracted.language == "en"


def _span(feeds: list[bytes]) -> tuple[datetime, datetime]:
    dates = [
        e.published
        for body in feeds
        for e in parse_feed(body, url="http://x/").entries
        if e.published
    ]
    return min(dates), max(dates)


def test_served_dates_end_this_minute_and_keep_their_spacing(fetcher: Fetcher) -> None:
    raw = [(CORPUS.folder / o.slug / o.feed_file).read_bytes() for o in CORPUS.outlets]
    with serve_corpus(CORPUS, now=NOW) as served:
        served_feeds = [
            fetcher.fetch(url, max_bytes=10**6).body for url in served.feed_urls.values()
        ]
    (raw_first, raw_last), (first, last) = _span(raw), _span(served_feeds)
    assert last == NOW.replace(second=0)
    assert last - first == raw_last - raw_first > timedelta(days=2)


def test_shift_dates_rewrites_both_formats() -> None:
    body = (
        b"<pubDate>Thu, 04 Dec 2025 09:15:00 +0000</pubDate><updated>2025-12-04T09:15:00Z</updated>"
    )
    shifted = shift_dates(body, timedelta(days=1, hours=2))
    assert (
        shifted
        == b"<pubDate>Fri, 05 Dec 2025 11:15:00 +0000</pubDate><updated>2025-12-05T11:15:00Z</updated>"
    )


def _counts(engine: Engine) -> tuple[int, int, int]:
    with session_scope(engine) as session:
        articles = session.exec(select(func.count()).select_from(Article)).one()
        stories = session.exec(select(func.count()).select_from(Story)).one()
        members = session.exec(select(func.count()).where(Article.story_id.is_not(None))).one()  # type: ignore[union-attr]
    return articles, stories, members


def test_crawling_twice_adds_nothing_the_second_time(settings: Settings, engine: Engine) -> None:
    now = datetime.now(UTC)  # the crawl runs on the clock: the corpus must be recent
    use_runtime(build_runtime(settings))
    try:
        with serve_corpus(CORPUS, now=now) as served:
            with session_scope(engine) as session:
                for url in served.feed_urls.values():
                    store.add_source(session=session, url=url, now=now)
            first = crawl_due_sources()
            before = _counts(engine)
            with session_scope(engine) as session:
                session.execute(update(Source).values(next_poll_at=now))  # every source due again
            second = crawl_due_sources()
    finally:
        use_runtime(None)
    assert (first.sources_polled, first.new_articles) == (7, 40)
    assert (second.sources_polled, second.new_articles) == (7, 0)
    assert _counts(engine) == before
    assert before[0] == before[2] == 40
