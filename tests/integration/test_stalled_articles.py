"""The safety net for lost tasks: articles left pending or unclustered past a deadline are sent
to their task again (Celery's eager mode, the real tasks, a real page over HTTP)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from aggregator import pipeline, store
from aggregator.db import session_scope
from aggregator.fetch import Fetcher
from aggregator.models import Article, ExtractionStatus
from aggregator.politeness import LocalHostLimiter
from aggregator.settings import Settings
from tests.conftest import FixtureSite
from tests.stored import add_extracted_article
from workers import tasks
from workers.celery_app import build_runtime, use_runtime
from workers.inprocess import eager_tasks

PAGE = (
    "<html lang='en'><body><article><h1>Library vote</h1><p>"
    + "The town council voted on Thursday to build a new library on the old station site. " * 6
    + "</p></article></body></html>"
)


def test_lost_fetch_and_cluster_tasks_are_sent_again(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    url = site.serve("/a", PAGE)
    with session_scope(engine) as session:
        source, _ = store.add_source(session=session, url=site.url("/feed"), now=long_ago)
        lost_fetch = Article(
            source_id=source.id or 0, guid="g", url=url, canonical_url=url, discovered_at=long_ago
        )
        session.add(lost_fetch)
        lost_cluster = add_extracted_article(session, "wire", "Comet seen", "A comet. " * 40)
        lost_cluster.fetched_at = long_ago
        recent = add_extracted_article(session, "post", "Fresh news", "Just in. " * 40)
        recent.fetched_at = datetime.now(UTC)  # its cluster task may simply be queued still
        recent.published_at = recent.fetched_at  # after the others: not in their backlog
    use_runtime(build_runtime(settings))
    try:
        with eager_tasks():
            assert tasks.resend_stalled_articles() == 2
    finally:
        use_runtime(None)
    with session_scope(engine) as session:
        by_guid = {a.guid: a for a in session.exec(select(Article))}
    fetched = by_guid["g"]
    assert fetched.extraction_status == ExtractionStatus.EXTRACTED.value
    assert fetched.story_id is not None  # fetched, then clustered by the follow-up
    assert by_guid[lost_cluster.guid].story_id is not None
    assert by_guid[recent.guid].story_id is None
    assert site.hits.count("/a") == 1


def test_a_fetch_waiting_for_its_retry_is_not_sent_again(
    engine: Engine, settings: Settings
) -> None:
    """A retry that is only waiting (a busy host, a Retry-After) is no lost task: the sweep
    leaves the article alone until its retry is due, then for the usual deadline after that."""
    now = datetime.now(UTC)
    deadline = timedelta(seconds=settings.stalled_article_seconds)
    with session_scope(engine) as session:
        source, _ = store.add_source(session=session, url="https://a.example/feed", now=now)
        ids = {}
        for guid, retry_due in (
            ("waiting", now + timedelta(minutes=20)),
            ("retry lost", now - deadline - timedelta(minutes=1)),
            ("never retried", None),
        ):
            url = f"https://a.example/{guid.replace(' ', '-')}"
            ids[guid] = _pending(session, source.id or 0, url, now - timedelta(hours=2))
            if retry_due is not None:
                pipeline.note_fetch_retry(ids[guid], session=session, due=retry_due)
    with session_scope(engine) as session:
        to_fetch, _ = store.stalled_article_ids(session=session, before=now - deadline, limit=10)
    assert sorted(to_fetch) == sorted([ids["retry lost"], ids["never retried"]])


def test_the_in_process_crawl_waits_for_a_busy_host_and_fetches_every_page(
    engine: Engine, settings: Settings, site: FixtureSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`aggregator crawl` has no broker to hold a retry: a page whose host has spent its budget
    waits in the process (the clock and the pause are simulated, the server is real)."""
    clock = [0.0]
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(time, "sleep", pause)  # the module workers.tasks sleeps with
    limiter = LocalHostLimiter(per_minute=2, concurrent=1, clock=lambda: clock[0])
    now = datetime.now(UTC)
    ids = []
    with session_scope(engine) as session:
        source, _ = store.add_source(session=session, url=site.url("/feed"), now=now)
        for n in range(3):
            url = site.serve(f"/p{n}", PAGE.replace("new library", f"new library number {n}"))
            ids.append(_pending(session, source.id or 0, url, now))
    runtime = build_runtime(settings)
    runtime.fetcher = Fetcher(settings, limiter=limiter)
    use_runtime(runtime)
    try:
        with eager_tasks():
            assert all(tasks.fetch_article.delay(article_id).get() for article_id in ids)
    finally:
        use_runtime(None)
    with session_scope(engine) as session:
        articles = [session.get(Article, article_id) for article_id in ids]
        statuses = [article.extraction_status for article in articles if article is not None]
    assert statuses == [ExtractionStatus.EXTRACTED.value] * 3
    assert pauses and set(pauses) == {tasks.EAGER_BUSY_WAIT_SECONDS}
    assert [site.hits.count(f"/p{n}") for n in range(3)] == [1, 1, 1]


def _pending(session: Session, source_id: int, url: str, discovered_at: datetime) -> int:
    """A new article of the source, not yet fetched; its id."""
    article = Article(
        source_id=source_id, guid=url, url=url, canonical_url=url, discovered_at=discovered_at
    )
    session.add(article)
    session.flush()
    return article.id or 0
