"""The safety net for lost tasks: articles left pending or unclustered past a deadline are sent
to their task again (Celery's eager mode, the real tasks, a real page over HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import select

from aggregator import store
from aggregator.db import session_scope
from aggregator.models import Article, ExtractionStatus
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
