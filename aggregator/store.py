"""Queries. Every function takes `session=` keyword-only and never commits: the caller owns the
transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, bindparam, delete, func, insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from aggregator.models import (
    AWAITING_STORY,
    Article,
    ArticleBand,
    ClusterTerm,
    DigestDelivery,
    ExtractionStatus,
    Source,
    Story,
    StoryIndexEntry,
    Subscriber,
)

DOCUMENT_COUNT_TERM = ""  # the cluster_terms row with the empty term counts clustered articles


# A source removed while it has articles is retired: kept, marked dead, due only on this date.
RETIRED_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)


def is_retired(source: Source) -> bool:
    return source.next_poll_at.year == RETIRED_UNTIL.year  # SQLite gives it back without a zone


def add_source(
    *, session: Session, url: str, title: str = "", now: datetime
) -> tuple[Source, bool]:
    """The source with this feed URL, created (due now) when new; returns (source, created).
    Adding a retired source's URL again brings it back: it is due now."""
    existing = session.exec(select(Source).where(Source.url == url)).first()
    if existing:
        if is_retired(existing):
            existing.next_poll_at = now
            session.add(existing)
            session.flush()
        return existing, False
    source = Source(url=url, title=title, created_at=now, next_poll_at=now)
    session.add(source)
    session.flush()
    return source, True


def list_sources(*, session: Session) -> Sequence[Source]:
    return session.exec(select(Source).order_by(col(Source.id))).all()


def due_source_ids(
    *, session: Session, now: datetime, limit: int, stale_before: datetime | None = None
) -> list[int]:
    """Sources whose next poll time has come and that no poll holds (or whose poll started
    before `stale_before`: lost, re-queued by the watchdog), the longest-waiting first."""
    query = (
        select(Source.id)
        .where(Source.next_poll_at <= now, _lease_free(stale_before or now))
        .order_by(col(Source.next_poll_at), col(Source.id))
        .limit(limit)
    )
    return [source_id for source_id in session.exec(query).all() if source_id is not None]


def _lease_free(stale_before: datetime) -> ColumnElement[bool]:
    started = col(Source.poll_started_at)
    return or_(started.is_(None), started < stale_before)


def claim_source(
    *, session: Session, source_id: int, now: datetime, stale_before: datetime
) -> bool:
    """Take the poll lease of a due source with one conditional UPDATE: of many schedulers or
    workers racing for it (SQLite or PostgreSQL), exactly one wins."""
    statement = (
        update(Source)
        .where(col(Source.id) == source_id, col(Source.next_poll_at) <= now)
        .where(_lease_free(stale_before))
        .values(poll_started_at=now)
    )
    return _rowcount(session.execute(statement)) == 1


def release_source(*, session: Session, source_id: int, lease: datetime) -> bool:
    """Give the lease back; False when it is no longer ours (the watchdog gave it away)."""
    statement = (
        update(Source)
        .where(col(Source.id) == source_id, col(Source.poll_started_at) == lease)
        .values(poll_started_at=None)
    )
    return _rowcount(session.execute(statement)) == 1


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0))


# Statuses of articles that belong in a story once clustered.
CLUSTERED_STATUSES = (
    ExtractionStatus.EXTRACTED.value,
    ExtractionStatus.SUMMARY.value,
    ExtractionStatus.DUPLICATE.value,
)


def pending_article_ids(*, session: Session, source_id: int) -> list[int]:
    """The source's articles still waiting for their fetch."""
    query = select(Article.id).where(
        Article.source_id == source_id,
        Article.extraction_status == ExtractionStatus.PENDING.value,
    )
    return [article_id for article_id in session.exec(query).all() if article_id is not None]


def stalled_article_ids(
    *, session: Session, before: datetime, limit: int
) -> tuple[list[int], list[int]]:
    """Articles whose next task should long have run: (still pending since before `before`
    with no fetch retry due after it, fetched before it but in no story). A task lost in a
    crash leaves them so."""
    pending = select(Article.id).where(
        Article.extraction_status == ExtractionStatus.PENDING.value,
        col(Article.discovered_at) < before,
        or_(col(Article.fetch_retry_at).is_(None), col(Article.fetch_retry_at) < before),
    )
    unclustered = select(Article.id).where(
        col(Article.extraction_status).in_(CLUSTERED_STATUSES),
        col(Article.story_id).is_(None),
        col(Article.fetched_at) < before,
    )
    return (
        [i for i in session.exec(pending.order_by(col(Article.id)).limit(limit)) if i],
        [i for i in session.exec(unclustered.order_by(col(Article.id)).limit(limit)) if i],
    )


def entries_since(*, session: Session, source_id: int, since: datetime) -> int:
    """Articles of the source published (or, undated, discovered) since `since`."""
    when = func.coalesce(col(Article.published_at), col(Article.discovered_at))
    query = select(func.count()).where(col(Article.source_id) == source_id, when >= since)
    return int(session.exec(query).one())


def article_by_guid(*, session: Session, source_id: int, guid: str) -> Article | None:
    query = select(Article).where(Article.source_id == source_id, Article.guid == guid)
    return session.exec(query).first()


def source_url_taken(*, session: Session, url: str) -> bool:
    return session.exec(select(Source.id).where(Source.url == url)).first() is not None


def canonical_url_taken(*, session: Session, canonical_url: str) -> bool:
    query = select(Article.id).where(Article.canonical_url == canonical_url).limit(1)
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


def oldest_awaiting_story(*, session: Session, up_to: Article) -> int | None:
    """The earliest published extracted original without a story, if published no later than
    `up_to` (ties by id): the clustering consumer's next (index ix_articles_awaiting_story)."""
    published, article_id = col(Article.published_at), col(Article.id)
    query = (
        select(Article.id)
        .where(AWAITING_STORY)
        .where(
            or_(
                published < up_to.published_at,
                (published == up_to.published_at) & (article_id <= up_to.id),
            )
        )
        .order_by(published, article_id)
        .limit(1)
    )
    return session.exec(query).first()


def fetch_pending_before(
    *, session: Session, published: datetime, discovered_since: datetime
) -> bool:
    """Whether an article published (or, undated, discovered) before `published` and found by a
    poll since `discovered_since` is still waiting for its fetch."""
    when = func.coalesce(col(Article.published_at), col(Article.discovered_at))
    query = select(Article.id).where(
        Article.extraction_status == ExtractionStatus.PENDING.value,
        col(Article.discovered_at) >= discovered_since,
        when < published,
    )
    return session.exec(query.limit(1)).first() is not None


def unclustered_duplicates(*, session: Session, original_id: int) -> Sequence[Article]:
    query = select(Article).where(
        Article.duplicate_of_id == original_id, col(Article.story_id).is_(None)
    )
    return session.exec(query).all()


def copies_of(*, session: Session, original_id: int) -> Sequence[Article]:
    """The articles marked as copies of ``original_id``."""
    return session.exec(select(Article).where(Article.duplicate_of_id == original_id)).all()


def lock_clustering(*, session: Session) -> None:
    """Serialise clustering transactions on both backends: rewriting the one counter row takes
    SQLite's write lock and a PostgreSQL row lock, held until the caller's commit."""
    _upsert_terms(session, [DOCUMENT_COUNT_TERM], increment=0)


def add_document(*, session: Session, terms: Iterable[str]) -> tuple[int, dict[str, int]]:
    """Count one more clustered document and one more document for each of its terms.
    Returns the document count and the terms' updated document frequencies."""
    distinct = sorted(set(terms) | {DOCUMENT_COUNT_TERM})
    _upsert_terms(session, distinct, increment=1)
    query = select(ClusterTerm.term, ClusterTerm.document_count)  # plain rows, not ORM objects
    rows = session.exec(query.where(col(ClusterTerm.term).in_(distinct))).all()
    frequencies = {term: count for term, count in rows}
    return frequencies.pop(DOCUMENT_COUNT_TERM), frequencies


def _upsert_terms(session: Session, terms: Sequence[str], *, increment: int) -> None:
    """One statement, executed for many rows (compiled once, cached across calls)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ClusterTerm).values(
        term=bindparam("term"), document_count=bindparam("increment")
    )
    statement = statement.on_conflict_do_update(
        index_elements=["term"],
        set_={
            "document_count": col(ClusterTerm.document_count) + statement.excluded.document_count
        },
    )
    session.execute(statement, [{"term": t, "increment": increment} for t in terms])


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
    tables = (DigestDelivery, Subscriber, ArticleBand, StoryIndexEntry, Article, Story, ClusterTerm)
    for table in (*tables, Source):
        session.execute(delete(table))


def articles_sharing_bands(
    *, session: Session, bands: Sequence[str], exclude_id: int
) -> Sequence[Article]:
    """Articles whose MinHash shares at least one LSH band with the given bands."""
    wanted = set(enumerate(bands))
    rows = session.exec(
        select(ArticleBand.article_id, ArticleBand.band, ArticleBand.hash).where(
            col(ArticleBand.hash).in_(bands)
        )
    ).all()
    ids = {article_id for article_id, band, hash_ in rows if (band, hash_) in wanted}
    ids.discard(exclude_id)
    return session.exec(select(Article).where(col(Article.id).in_(ids))).all() if ids else []


def add_article_bands(*, session: Session, article_id: int, bands: Sequence[str]) -> None:
    rows = [{"article_id": article_id, "band": i, "hash": h} for i, h in enumerate(bands)]
    session.execute(insert(ArticleBand), rows)


# ---------------------------------------------------------------- story repair

MAX_REDIRECT_HOPS = 16  # merges are re-pointed at the survivor, so chains stay short


def active_stories(*, session: Session, since: datetime, limit: int) -> list[Story]:
    """Unmerged stories with a clusterer profile and an article since `since`: the `limit`
    latest, returned oldest (lowest id) first."""
    query = (
        select(Story)
        .where(col(Story.merged_into_id).is_(None), col(Story.cluster_key).is_not(None))
        .where(col(Story.last_seen) >= since)
        .order_by(col(Story.last_seen).desc(), col(Story.id).desc())
        .limit(limit)
    )
    return sorted((s for s in session.exec(query).all() if s.profile), key=lambda s: s.id or 0)


def article_stories(*, session: Session, article_ids: Sequence[int]) -> dict[int, int | None]:
    """The story each of the articles is in now (None: in none)."""
    found: dict[int, int | None] = {}
    for start in range(0, len(article_ids), 500):
        batch = article_ids[start : start + 500]
        query = select(Article.id, Article.story_id).where(col(Article.id).in_(batch))
        found.update({article_id or 0: story_id for article_id, story_id in session.exec(query)})
    return found


def articles_in_story(*, session: Session, story_id: int) -> Sequence[Article]:
    """The story's articles, copies included, oldest first."""
    when = func.coalesce(col(Article.published_at), col(Article.discovered_at))
    query = select(Article).where(Article.story_id == story_id).order_by(when, col(Article.id))
    return session.exec(query).all()


def story_time_range(*, session: Session, story_id: int) -> tuple[datetime, datetime] | None:
    """The earliest and latest publication (or discovery) time of the story's articles."""
    when = func.coalesce(col(Article.published_at), col(Article.discovered_at))
    query = select(func.min(when), func.max(when)).where(Article.story_id == story_id)
    first, last = session.exec(query).one()
    if first is None or last is None:
        return None
    return _utc(first), _utc(last)


def _utc(moment: datetime | str) -> datetime:
    """An aggregate over a UTC column comes back naive (or as text) on SQLite."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def count_story_articles(*, session: Session, story_id: int) -> int:
    query = select(func.count()).where(Article.story_id == story_id)
    return int(session.exec(query).one())


def retire_story(*, session: Session, story_id: int, survivor_id: int) -> None:
    """Mark a story merged into `survivor_id`: it leaves the clusterer's index, and stories
    merged into it earlier now point at the survivor."""
    session.execute(delete(StoryIndexEntry).where(col(StoryIndexEntry.story_id) == story_id))
    session.execute(
        update(Story)
        .where(col(Story.merged_into_id) == story_id)
        .values(merged_into_id=survivor_id)
        .execution_options(synchronize_session="fetch")
    )


def story_survivor(*, session: Session, story_id: int) -> Story | None:
    """The story that answers for `story_id`: itself, or the story it was merged into (following
    merges, at most MAX_REDIRECT_HOPS). None if the id never existed."""
    story = session.get(Story, story_id)
    for _ in range(MAX_REDIRECT_HOPS):
        if story is None or story.merged_into_id is None:
            break
        story = session.get(Story, story.merged_into_id)
    return story
