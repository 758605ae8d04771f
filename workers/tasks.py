"""Thin task wrappers: open a session, call one pipeline function, enqueue follow-ups."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from celery import Task

from aggregator import delivery, pipeline, retention, store
from aggregator.db import session_scope
from workers.celery_app import app, runtime


def _now() -> datetime:
    return datetime.now(UTC)


# A lost connection (pipeline.CONNECTION_ERRORS) rolls the task's transaction back; the task
# then runs again a little later instead of being dropped.
TRANSIENT_RETRY: dict[str, Any] = {
    "autoretry_for": pipeline.CONNECTION_ERRORS,
    "retry_backoff": 1,
    "retry_backoff_max": 60,
}


@app.task(name="workers.tasks.schedule_due_feeds", **TRANSIENT_RETRY, max_retries=12)
def schedule_due_feeds() -> int:
    rt = runtime()
    with session_scope(rt.engine) as session:
        claimed = pipeline.schedule_due_feeds(session=session, settings=rt.settings, now=_now())
    for source_id, lease in claimed:
        poll_feed.delay(source_id, lease.isoformat())
    return len(claimed)


@app.task(name="workers.tasks.poll_feed", **TRANSIENT_RETRY, max_retries=12)
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


@app.task(name="workers.tasks.fetch_article", bind=True, max_retries=None, **TRANSIENT_RETRY)
def fetch_article(self: Task[Any, Any], article_id: int, failures: int = 0) -> bool:
    """`failures`: the transient failures so far (waits for a busy host are not counted)."""
    try:
        to_cluster = _fetch(article_id, failures, wait_for_host=self.request.is_eager)
    except pipeline.RetryLater as exc:
        longest = runtime().settings.fetch_retry_max_wait_seconds
        countdown = fetch_retry_countdown(exc.countdown, failures, longest)
        with session_scope(runtime().engine) as session:
            due = _now() + timedelta(seconds=countdown)
            pipeline.note_fetch_retry(article_id, session=session, due=due)
        args = (article_id, failures + exc.failed)
        raise self.retry(exc=exc, args=args, countdown=countdown) from exc
    if to_cluster:
        _cluster_soon(article_id)
    return to_cluster


def _fetch(article_id: int, failures: int, *, wait_for_host: bool) -> bool:
    """One fetch of the article. With `wait_for_host` (the in-process crawl, which has no broker
    to hold a retry), a host that has spent its request budget is waited for here."""
    rt = runtime()
    while True:
        try:
            with session_scope(rt.engine) as session:
                return pipeline.fetch_article(
                    article_id,
                    session=session,
                    fetcher=rt.fetcher,
                    settings=rt.settings,
                    now=_now(),
                    final_attempt=failures >= rt.settings.fetch_retries,
                )
        except pipeline.RetryLater as exc:
            if exc.failed or not wait_for_host:
                raise
            time.sleep(EAGER_BUSY_WAIT_SECONDS)


# The in-process crawl's pause before it tries a busy host again (see _fetch).
EAGER_BUSY_WAIT_SECONDS = 2.0


def fetch_retry_countdown(asked: float | None, retries: int, longest: float) -> float:
    """Seconds before the next fetch attempt: what the failure asked for (a Retry-After) or
    30 s doubled per retry so far, at most ``longest``.

    A task waiting out its countdown is not acknowledged, and the brokers do not wait for ever:
    Redis hands the message out again after its visibility timeout, which would run the retry
    twice, and RabbitMQ closes a consumer that holds a delivery longer than its consumer_timeout
    (30 minutes by default). The default cap, 20 minutes, leaves room for the run itself."""
    wanted = asked if asked is not None and asked > 0 else 30.0 * 2 ** min(retries, 20)
    return min(wanted, longest)


def _cluster_soon(article_id: int) -> None:
    held = runtime().held_for_clustering
    if held is not None:
        held.append(article_id)  # the in-process crawl clusters after its fetches
    else:
        cluster_article.apply_async(
            (article_id,), countdown=runtime().settings.cluster_settle_seconds
        )


@app.task(name="workers.tasks.cluster_article", bind=True, **TRANSIENT_RETRY, max_retries=12)
def cluster_article(self: Task[Any, Any], article_id: int, waited: int = 0) -> int | None:
    """Articles published before this one and still awaiting their story go first, each in a
    transaction of its own (see pipeline.cluster_next); every step removes one from the backlog.
    While an earlier article is still being fetched, the task comes back later, twice as late
    each time (`waited` times so far): in a long backfill, the task of the last article fetched
    takes the backlog, and the others need not look every minute. The in-process crawl (eager)
    clusters after all its fetches and does not wait."""
    rt = runtime()
    while True:
        with session_scope(rt.engine) as session:
            step = pipeline.cluster_next(
                article_id,
                session=session,
                settings=rt.settings,
                now=_now(),
                wait_for_fetches=not self.request.is_eager,
            )
        if step.waiting:
            cluster_article.apply_async(
                (article_id, waited + 1), countdown=_wait_before_clustering(waited)
            )
            return None
        if step.done:
            return step.story_id


def _wait_before_clustering(waited: int) -> float:
    settings = runtime().settings
    first = max(settings.cluster_settle_seconds, 1.0)
    return min(first * 2.0**waited, max(settings.cluster_max_wait_seconds, first))


@app.task(name="workers.tasks.repair_stories", soft_time_limit=600, time_limit=660)
def repair_stories() -> int:
    rt = runtime()
    with session_scope(rt.engine) as session:
        report = pipeline.repair_stories(session=session, settings=rt.settings, now=_now())
    return len(report.merged) + len(report.split) + len(report.rejoined) + len(report.regrouped)


@app.task(name="workers.tasks.purge_expired", soft_time_limit=600, time_limit=660)
def purge_expired() -> int:
    rt = runtime()
    with session_scope(rt.engine) as session:
        report = retention.purge_batch(session=session, settings=rt.settings, now=_now())
    if report.more:
        purge_expired.delay()
    return report.articles


@app.task(name="workers.tasks.schedule_due_digests")
def schedule_due_digests() -> int:
    rt = runtime()
    with session_scope(rt.engine) as session:
        due = delivery.schedule_due_digests(session=session, settings=rt.settings, now=_now())
    for subscriber_id, day in due:
        send_digest.delay(subscriber_id, day.isoformat())
    return len(due)


@app.task(name="workers.tasks.send_digest", bind=True, max_retries=None)
def send_digest(self: Task[Any, Any], subscriber_id: int, day: str) -> str:
    rt = runtime()
    try:
        outcome = delivery.send_digest(
            subscriber_id,
            date.fromisoformat(day),
            engine=rt.engine,
            settings=rt.settings,
            now=_now(),
        )
    except delivery.SendLater as exc:
        raise self.retry(exc=exc, countdown=exc.countdown) from exc
    return outcome.status


@app.task(name="workers.tasks.resend_stalled_articles", **TRANSIENT_RETRY, max_retries=3)
def resend_stalled_articles() -> int:
    """A safety net: articles whose fetch or clustering task was lost (a crash between a commit
    and the next enqueue, a broker outage during a retry) are sent again. Both tasks are
    idempotent, so a task that was only slow costs one redundant run."""
    rt = runtime()
    before = _now() - timedelta(seconds=rt.settings.stalled_article_seconds)
    with session_scope(rt.engine) as session:
        to_fetch, to_cluster = store.stalled_article_ids(session=session, before=before, limit=1000)
    for article_id in to_fetch:
        fetch_article.delay(article_id)
    for article_id in to_cluster:
        cluster_article.delay(article_id)
    return len(to_fetch) + len(to_cluster)
