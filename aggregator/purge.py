"""Retention queries: which articles and stories have expired, and removing them in batches.

An article expires when it was published (or, without a date, discovered) before the cutoff and
its story, if any, has been quiet since before the cutoff too: a story that is still growing keeps
all its articles, so its counts stay true. A purged article leaves a tombstone. Like store.py,
functions take `session=` and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from aggregator.models import Article, ArticleBand, Story, StoryIndexEntry, Tombstone


def _expired_article(cutoff: datetime) -> ColumnElement[bool]:
    published = col(Article.published_at)
    dated_before = or_(
        published < cutoff, and_(published.is_(None), col(Article.discovered_at) < cutoff)
    )
    quiet_story = or_(
        col(Article.story_id).is_(None),
        col(Article.story_id).in_(select(Story.id).where(col(Story.last_seen) < cutoff)),
    )
    return and_(dated_before, quiet_story)


def _expired_story(cutoff: datetime) -> ColumnElement[bool]:
    """A quiet story none of whose articles remains."""
    still_held = select(Article.id).where(Article.story_id == Story.id)
    return and_(col(Story.last_seen) < cutoff, ~still_held.exists())


def count_expired(*, session: Session, cutoff: datetime) -> tuple[int, int]:
    """(articles, stories) that a purge with this cutoff removes."""
    articles = session.exec(select(func.count()).where(_expired_article(cutoff))).one()
    stories = session.exec(
        select(func.count()).select_from(Story).where(col(Story.last_seen) < cutoff)
    ).one()
    return articles, stories


def expired_article_ids(*, session: Session, cutoff: datetime, limit: int) -> Sequence[int]:
    query = select(Article.id).where(_expired_article(cutoff)).order_by(col(Article.id))
    return [article_id for article_id in session.exec(query.limit(limit)) if article_id]


def purge_articles(*, session: Session, article_ids: Sequence[int], now: datetime) -> None:
    """Tombstone and delete these articles; copies of them that remain lose their original."""
    rows = session.exec(
        select(Article.canonical_url, Article.source_id, Article.guid).where(
            col(Article.id).in_(article_ids)
        )
    ).all()
    if rows:
        insert = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        statement = insert(Tombstone).on_conflict_do_nothing(index_elements=["canonical_url"])
        session.execute(
            statement,
            [
                {"canonical_url": url, "source_id": source, "guid": guid}
                | {"purged_at": now, "last_seen_at": now}
                for url, source, guid in rows
            ],
        )
    session.execute(
        update(Article)
        .where(col(Article.duplicate_of_id).in_(article_ids))
        .where(col(Article.id).not_in(article_ids))
        .values(duplicate_of_id=None)
    )
    session.execute(delete(ArticleBand).where(col(ArticleBand.article_id).in_(article_ids)))
    session.execute(delete(Article).where(col(Article.id).in_(article_ids)))


def purge_stories(*, session: Session, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` expired stories with their index entries; returns how many."""
    query = select(Story.id).where(_expired_story(cutoff)).order_by(col(Story.id)).limit(limit)
    expired = [story_id for story_id in session.exec(query) if story_id is not None]
    if not expired:
        return 0
    ids = _with_merged_into(session, expired)
    session.execute(delete(StoryIndexEntry).where(col(StoryIndexEntry.story_id).in_(ids)))
    session.execute(delete(Story).where(col(Story.id).in_(ids)))
    return len(ids)


def _with_merged_into(session: Session, ids: list[int]) -> list[int]:
    """The stories plus those merged into them (their redirects go with them)."""
    found = set(ids)
    frontier = ids
    while frontier:
        merged = select(Story.id).where(col(Story.merged_into_id).in_(frontier))
        frontier = [i for i in session.exec(merged) if i is not None and i not in found]
        found.update(frontier)
    return sorted(found)


def expire_tombstones(*, session: Session, unseen_since: datetime) -> int:
    result = session.execute(delete(Tombstone).where(col(Tombstone.last_seen_at) < unseen_since))
    return int(getattr(result, "rowcount", 0) or 0)


def find_tombstone(
    *, session: Session, source_id: int, guid: str, canonical_url: str
) -> Tombstone | None:
    """The tombstone of this entry if it was purged, found by its URL or its feed's GUID."""
    query = select(Tombstone).where(
        or_(
            col(Tombstone.canonical_url) == canonical_url,
            and_(col(Tombstone.source_id) == source_id, col(Tombstone.guid) == guid),
        )
    )
    return session.exec(query.limit(1)).first()
