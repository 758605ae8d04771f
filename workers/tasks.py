"""Thin task wrappers: open a session, call one pipeline function, enqueue follow-ups."""

from __future__ import annotations

from datetime import UTC, datetime

from aggregator import pipeline
from aggregator.db import session_scope
from workers.celery_app import app, runtime


def _now() -> datetime:
    return datetime.now(UTC)


@app.task(name="workers.tasks.schedule_due_feeds")
def schedule_due_feeds() -> int:
    rt = runtime()
    with session_scope(rt.engine) as session:
        source_ids = pipeline.due_sources(session=session, settings=rt.settings, now=_now())
    for source_id in source_ids:
        poll_feed.delay(source_id)
    return len(source_ids)


@app.task(name="workers.tasks.poll_feed")
def poll_feed(source_id: int) -> int:
    rt = runtime()
    with session_scope(rt.engine) as session:
        outcome = pipeline.poll_feed(
            source_id, session=session, fetcher=rt.fetcher, settings=rt.settings, now=_now()
        )
    for article_id in outcome.new_article_ids:
        fetch_article.delay(article_id)
    return len(outcome.new_article_ids)


@app.task(name="workers.tasks.fetch_article")
def fetch_article(article_id: int) -> bool:
    rt = runtime()
    with session_scope(rt.engine) as session:
        to_cluster = pipeline.fetch_article(
            article_id, session=session, fetcher=rt.fetcher, settings=rt.settings, now=_now()
        )
    if to_cluster:
        cluster_article.delay(article_id)
    return to_cluster


@app.task(name="workers.tasks.cluster_article")
def cluster_article(article_id: int) -> int | None:
    rt = runtime()
    with session_scope(rt.engine) as session:
        return pipeline.cluster_article(article_id, session=session, settings=rt.settings)
