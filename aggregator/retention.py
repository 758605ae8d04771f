"""Retention: articles and stories older than the retention period go, in batches.

    beat ─hourly─▶ purge_expired ─▶ purge_batch (one transaction) ─▶ more left? enqueue again

Each batch holds the clustering lock, so a story is never assigned an article while it is being
removed. Purged articles leave tombstones (aggregator/purge.py) that keep feeds still carrying
them from bringing them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from aggregator import purge, store
from aggregator.settings import Settings


@dataclass(frozen=True)
class PurgeReport:
    articles: int
    stories: int
    tombstones_expired: int
    more: bool  # a batch was full: another may find more


def retention_cutoff(settings: Settings, now: datetime) -> datetime:
    return now - timedelta(days=settings.retention_days)


def preview_purge(*, session: Session, settings: Settings, now: datetime) -> tuple[int, int]:
    """(articles, stories) a purge would remove now, removing nothing."""
    return purge.count_expired(session=session, cutoff=retention_cutoff(settings, now))


def purge_batch(*, session: Session, settings: Settings, now: datetime) -> PurgeReport:
    """Remove up to a batch of expired articles and of expired stories, and the tombstones no
    feed has shown for a retention period."""
    store.lock_clustering(session=session)
    cutoff = retention_cutoff(settings, now)
    limit = settings.purge_batch_size
    article_ids = purge.expired_article_ids(session=session, cutoff=cutoff, limit=limit)
    if article_ids:
        purge.purge_articles(session=session, article_ids=article_ids, now=now)
    stories = purge.purge_stories(session=session, cutoff=cutoff, limit=limit)
    tombstones = purge.expire_tombstones(session=session, unseen_since=cutoff)
    more = len(article_ids) == limit or stories >= limit
    return PurgeReport(len(article_ids), stories, tombstones, more)
