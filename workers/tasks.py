"""Thin task wrappers: open a session, call one pipeline function, enqueue follow-ups."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import Task

from aggregator import pipeline
from aggregator.db import session_scope
from workers.celery_app import app, runtime


def _now() -> datetime:
    return datetime.now(UTC)


@app.task(name="workers.tasks.schedule_due_feeds")
def schedule_due_feeds() -> int:
    rt = runtime()
    with session_scope(rt.engine) as session:
        claimed = pipeline.schedule_due_feeds(session=session, settings=rt.settings, now=_now())
    for source_id, lease in claimed:
        poll_feed.delay(source_id, lease.isoformat())
    return len(claimed)


@app.task(name="workers.tasks.poll_feed")
def poll_feed(source_id: int, lease: str | None = None) -> int:
    rt = runtime()
    with session_scope(rt.engine) as session:
        outcome = pipeline.poll_feed(
            source_id,
            session=session,
            fetcher=rt.fetcher,
            settings=rt.settings,
            now=_now(),
            lease=datetime.fromisoformat(lease) if lease else None,
        )
    for article_id in outcome.new_article_ids:
        fetch_article.delay(article_id)
    return len(outcome.new_article_ids)


@app.task(name="workers.tasks.fetch_article", bind=True, max_retries=None)
def fetch_article(self: Task[Any, Any], article_id: int) -> bool:
    rt = runtime()
    try:
        with session_scope(rt.engine) as session:
            to_cluster = pipeline.fetch_article(
                article_id,
                session=session,
                fetcher=rt.fetcher,
                settings=rt.settings,
                now=_now(),
                final_attempt=self.request.retries >= rt.settings.fetch_retries,
            )
    except pipeline.RetryLater as exc:
        countdown = exc.countdown or 30 * 2**self.request.retries
        raise self.retry(exc=exc, countdown=countdown) from exc
    if to_cluster:
        cluster_article.delay(article_id)
    return to_cluster


@app.task(name="workers.tasks.cluster_article")
def cluster_article(article_id: int) -> int | None:
    rt = runtime()
    with session_scope(rt.engine) as session:
        return pipeline.cluster_article(
            article_id, session=session, settings=rt.settings, now=_now()
        )


@app.task(name="workers.tasks.repair_stories", soft_time_limit=600, time_limit=660)
def repair_stories() -> int:
    rt = runtime()
    with session_scope(rt.engine) as session:
        report = pipeline.repair_stories(session=session, settings=rt.settings, now=_now())
    return len(report.merged) + len(report.split)
