"""Queries. Every function takes `session=` keyword-only and never commits: the caller owns the
transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, delete, func, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from aggregator.models import Article, ClusterTerm, DigestDelivery, Source, Story, Subscriber

DOCUMENT_COUNT_TERM = ""  # the cluster_terms row with the empty term counts clustered articles


def add_source(
    *, session: Session, url: str, title: str = "", now: datetime
) -> tuple[Source, bool]:
    """The source with this feed URL, created (due now) when new; returns (source, created)."""
    existing = session.exec(select(Source).where(Source.url == url)).first()
    if existing:
        return existing, False
    source = Source(url=url, title=title, created_at=now, next_poll_at=now)
    session.add(source)
    session.flush()
    return source, True


def list_sources(*, session: Session) -> Sequence[Source]:
    return session.exec(select(Source).order_by(col(Source.id))).all()


def due_source_ids(*, session: Session, now: datetime, limit: int) -> list[int]:
    """Sources whose next poll time has come, the longest-waiting first."""
    query = (
        select(Source.id)
        .where(Source.next_poll_at <= now)
        .order_by(col(Source.next_poll_at), col(Source.id))
        .limit(limit)
    )
    return [source_id for source_id in session.exec(query).all() if source_id is not None]


def article_exists(*, session: Session, source_id: int, guid: str, canonical_url: str) -> bool:
    by_guid = and_(col(Article.source_id) == source_id, col(Article.guid) == guid)
    by_url = col(Article.canonical_url) == canonical_url
    query = select(Article.id).where(or_(by_guid, by_url)).limit(1)
    return session.exec(query).first() is not None


def insert_article(*, session: Session, article: Article) -> int | None:
    """Insert unless the unique keys say it is stored already (then None). Safe under races."""
    try:
        with session.begin_nested():
            session.add(article)
    except IntegrityError:
        return None
    return article.id


def original_with_hash(*, session: Session, content_hash: str, exclude_id: int) -> Article | None:
    """The earliest other article with the same content fingerprint."""
    query = (
        select(Article)
        .where(Article.content_hash == content_hash, Article.id != exclude_id)
        .where(col(Article.duplicate_of_id).is_(None))
        .order_by(col(Article.id))
        .limit(1)
    )
    return session.exec(query).first()


def unclustered_duplicates(*, session: Session, original_id: int) -> Sequence[Article]:
    query = select(Article).where(
        Article.duplicate_of_id == original_id, col(Article.story_id).is_(None)
    )
    return session.exec(query).all()


def lock_clustering(*, session: Session) -> None:
    """Serialise clustering transactions on both backends: rewriting the one counter row takes
    SQLite's write lock and a PostgreSQL row lock, held until the caller's commit."""
    _upsert_terms(session, [DOCUMENT_COUNT_TERM], increment=0)


def add_document(*, session: Session, terms: Iterable[str]) -> tuple[int, dict[str, int]]:
    """Count one more clustered document and one more document for each of its terms.
    Returns the document count and the terms' updated document frequencies."""
    distinct = sorted(set(terms) | {DOCUMENT_COUNT_TERM})
    _upsert_terms(session, distinct, increment=1)
    rows = session.exec(select(ClusterTerm).where(col(ClusterTerm.term).in_(distinct))).all()
    frequencies = {row.term: row.document_count for row in rows}
    return frequencies.pop(DOCUMENT_COUNT_TERM), frequencies


def _upsert_terms(session: Session, terms: Sequence[str], *, increment: int) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ClusterTerm).values(
        [{"term": t, "document_count": increment} for t in terms]
    )
    statement = statement.on_conflict_do_update(
        index_elements=["term"],
        set_={"document_count": col(ClusterTerm.document_count) + increment},
    )
    session.execute(statement)


def active_stories(*, session: Session, since: datetime, language: str | None) -> Sequence[Story]:
    """Unmerged stories seen since `since`, in the article's language (any, if unknown)."""
    query = select(Story).where(Story.last_seen >= since, col(Story.merged_into_id).is_(None))
    if language:
        query = query.where(or_(col(Story.language) == language, col(Story.language).is_(None)))
    return session.exec(query).all()


def distinct_sources_in_story(*, session: Session, story_id: int) -> int:
    query = select(func.count(func.distinct(Article.source_id))).where(
        Article.story_id == story_id, col(Article.duplicate_of_id).is_(None)
    )
    return int(session.exec(query).one())


def latest_stories(*, session: Session, limit: int) -> Sequence[Story]:
    query = (
        select(Story)
        .where(col(Story.merged_into_id).is_(None))
        .order_by(col(Story.last_seen).desc(), col(Story.id).desc())
        .limit(limit)
    )
    return session.exec(query).all()


def story_articles(*, session: Session, story_id: int) -> Sequence[tuple[Article, Source]]:
    query = (
        select(Article, Source)
        .join(Source, col(Source.id) == col(Article.source_id))
        .where(Article.story_id == story_id)
        .order_by(col(Article.published_at), col(Article.id))
    )
    return session.exec(query).all()


def story_of_urls(*, session: Session, urls: Sequence[str]) -> dict[str, str]:
    """Story id (as text) of each stored article URL that has one."""
    query = select(Article.url, Article.story_id).where(
        col(Article.url).in_(urls), col(Article.story_id).is_not(None)
    )
    return {url: str(story_id) for url, story_id in session.exec(query).all()}


def delete_everything(*, session: Session) -> None:
    """Empty every table (the demo's --reset)."""
    for table in (DigestDelivery, Subscriber, Article, Story, ClusterTerm, Source):
        session.execute(delete(table))
