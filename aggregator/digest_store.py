"""Queries of the digest: subscribers, their delivery records, and the stories of a window.
Every function takes `session=` keyword-only and never commits: the caller owns the transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from aggregator.digest import CandidateStory, Outlet
from aggregator.models import (
    Article,
    DeliveryStatus,
    DigestDelivery,
    ExtractionStatus,
    Source,
    Story,
    Subscriber,
)
from aggregator.ranking import GROWTH_WINDOW

HISTORY_DELIVERIES = 30  # sent digests looked at for "already sent" stories
_IN_STORY = (ExtractionStatus.EXTRACTED.value, ExtractionStatus.SUMMARY.value)
_IN_STORY_ANY = (*_IN_STORY, ExtractionStatus.DUPLICATE.value)

# ---------------------------------------------------------------- subscribers


def subscriber_by_email(*, session: Session, email: str) -> Subscriber | None:
    query = select(Subscriber).where(func.lower(Subscriber.email) == email.strip().lower())
    return session.exec(query).first()


def list_subscribers(*, session: Session) -> Sequence[Subscriber]:
    return session.exec(select(Subscriber).order_by(col(Subscriber.id))).all()


def receiving_subscribers(*, session: Session) -> Sequence[Subscriber]:
    """Subscribers who get digests: subscribed, confirmed and not paused."""
    query = (
        select(Subscriber)
        .where(col(Subscriber.active), col(Subscriber.confirmed_at).is_not(None))
        .where(col(Subscriber.paused_at).is_(None))
        .order_by(col(Subscriber.id))
    )
    return session.exec(query).all()


def delete_subscriber(*, session: Session, subscriber_id: int) -> bool:
    """Remove a subscriber and their delivery records; False when there was none."""
    session.execute(
        delete(DigestDelivery).where(col(DigestDelivery.subscriber_id) == subscriber_id)
    )
    result = session.execute(delete(Subscriber).where(col(Subscriber.id) == subscriber_id))
    return int(getattr(result, "rowcount", 0)) == 1


# ---------------------------------------------------------------- deliveries


def finished_days(
    *, session: Session, subscriber_ids: Sequence[int], since: date, stale_before: datetime
) -> set[tuple[int, date]]:
    """(subscriber, day) pairs since `since` that need no send: finished, or in flight within
    their lease (claimed, or waiting for the task's own retry after a transient failure)."""
    if not subscriber_ids:
        return set()
    busy = and_(
        col(DigestDelivery.status).in_([DeliveryStatus.CLAIMED.value, DeliveryStatus.RETRY.value]),
        col(DigestDelivery.claimed_at) >= stale_before,
    )
    finished = col(DigestDelivery.status).in_(
        [DeliveryStatus.SENT.value, DeliveryStatus.SKIPPED.value, DeliveryStatus.FAILED.value]
    )
    query = select(col(DigestDelivery.subscriber_id), col(DigestDelivery.local_day)).where(
        col(DigestDelivery.subscriber_id).in_(subscriber_ids),
        col(DigestDelivery.local_day) >= since,
        or_(finished, busy),
    )
    return {(sid, day) for sid, day in session.exec(query).all()}


def delivery_for(*, session: Session, subscriber_id: int, day: date) -> DigestDelivery | None:
    query = select(DigestDelivery).where(
        DigestDelivery.subscriber_id == subscriber_id, DigestDelivery.local_day == day
    )
    return session.exec(query).first()


def claim_delivery(
    *,
    session: Session,
    subscriber_id: int,
    day: date,
    message_id: str,
    now: datetime,
    stale_before: datetime,
) -> DigestDelivery | None:
    """Take the send of this reader's day: create its record, or take over one that a transient
    failure released or whose sender's lease ran out (same Message-ID). One INSERT or one
    conditional UPDATE, so of any number of racing senders exactly one wins; None for losers
    and for days already finished."""
    record = _insert_claim(session, subscriber_id, day, message_id=message_id, now=now)
    if record is not None:
        return record
    if not _take_over_claim(session, subscriber_id, day, now=now, stale_before=stale_before):
        return None
    row = delivery_for(session=session, subscriber_id=subscriber_id, day=day)
    if row is not None:
        session.refresh(row)
    return row


def _insert_claim(
    session: Session, subscriber_id: int, day: date, *, message_id: str, now: datetime
) -> DigestDelivery | None:
    """The day's new record, or None when it exists already (the unique key refused it)."""
    record = DigestDelivery(
        subscriber_id=subscriber_id,
        local_day=day,
        status=DeliveryStatus.CLAIMED.value,
        message_id=message_id,
        created_at=now,
        claimed_at=now,
        attempts=1,
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        return None
    return record


def _take_over_claim(
    session: Session, subscriber_id: int, day: date, *, now: datetime, stale_before: datetime
) -> bool:
    """Claim an existing record that is free to retry; False when another sender has it or
    the day is finished."""
    taken = session.execute(
        update(DigestDelivery)
        .where(
            col(DigestDelivery.subscriber_id) == subscriber_id,
            col(DigestDelivery.local_day) == day,
            _claimable(stale_before),
        )
        .values(
            status=DeliveryStatus.CLAIMED.value,
            claimed_at=now,
            attempts=col(DigestDelivery.attempts) + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(taken, "rowcount", 0)) == 1


def _claimable(stale_before: datetime) -> ColumnElement[bool]:
    status = col(DigestDelivery.status)
    stale = and_(
        status == DeliveryStatus.CLAIMED.value,
        or_(
            col(DigestDelivery.claimed_at).is_(None),
            col(DigestDelivery.claimed_at) < stale_before,
        ),
    )
    return or_(status == DeliveryStatus.RETRY.value, stale)


def last_sent_at(*, session: Session, subscriber_id: int) -> datetime | None:
    query = select(func.max(DigestDelivery.sent_at)).where(
        DigestDelivery.subscriber_id == subscriber_id,
        DigestDelivery.status == DeliveryStatus.SENT.value,
    )
    value = session.exec(query).one()
    return _utc(value) if value is not None else None


def sent_outlets(*, session: Session, subscriber_id: int) -> dict[int, int]:
    """Stories of the reader's recent digests with the most outlets they had when sent."""
    query = (
        select(DigestDelivery.story_outlets)
        .where(
            DigestDelivery.subscriber_id == subscriber_id,
            DigestDelivery.status == DeliveryStatus.SENT.value,
        )
        .order_by(col(DigestDelivery.local_day).desc())
        .limit(HISTORY_DELIVERIES)
    )
    sent: dict[int, int] = {}
    for outlets in session.exec(query).all():
        for story_id, count in (outlets or {}).items():
            sent[int(story_id)] = max(sent.get(int(story_id), 0), int(count))
    return sent


# ---------------------------------------------------------------- stories


def candidate_stories(*, session: Session, since: datetime, now: datetime) -> list[CandidateStory]:
    """Unmerged stories with an article since `since`, with their outlets and growth."""
    stories = session.exec(
        select(Story).where(
            col(Story.merged_into_id).is_(None),
            col(Story.last_seen) >= since,
            col(Story.article_count) > 0,
        )
    ).all()
    if not stories:
        return []
    ids = [s.id for s in stories if s.id is not None]
    rows = _article_rows(session, ids)
    recent = _recent_counts(session, ids, now - GROWTH_WINDOW)
    return [_candidate(s, rows.get(s.id or 0, []), recent.get(s.id or 0, 0)) for s in stories]


_ArticleRow = tuple[int, str, str, int, str, str]  # article id, url, title, source id, name, feed


def _article_rows(session: Session, story_ids: Sequence[int]) -> dict[int, list[_ArticleRow]]:
    when = func.coalesce(col(Article.published_at), col(Article.discovered_at))
    query = (
        sa_select(
            col(Article.story_id),
            col(Article.id),
            col(Article.url),
            col(Article.title),
            col(Source.id),
            col(Source.title),
            col(Source.url),
        )
        .join(Source, col(Source.id) == col(Article.source_id))
        .where(
            col(Article.story_id).in_(story_ids),
            col(Article.extraction_status).in_(_IN_STORY_ANY),
        )
        .order_by(when, col(Article.id))
    )
    rows: dict[int, list[_ArticleRow]] = defaultdict(list)
    for story_id, article_id, url, title, source_id, name, feed_url in session.execute(query):
        rows[story_id].append((article_id, url, title, source_id, name, feed_url))
    return rows


def _recent_counts(session: Session, story_ids: Sequence[int], since: datetime) -> dict[int, int]:
    when = func.coalesce(col(Article.published_at), col(Article.discovered_at))
    query = (
        select(Article.story_id, func.count())
        .where(col(Article.story_id).in_(story_ids), when >= since)
        .group_by(col(Article.story_id))
    )
    return {story_id: int(count) for story_id, count in session.exec(query).all() if story_id}


def _candidate(story: Story, rows: Sequence[_ArticleRow], recent: int) -> CandidateStory:
    outlets: dict[int, Outlet] = {}
    for _, url, _, source_id, name, feed_url in rows:
        outlets.setdefault(source_id, Outlet(source_id, name or _host(feed_url), url))
    return CandidateStory(
        id=story.id or 0,
        headline=story.headline,
        last_seen=story.last_seen,
        article_count=story.article_count,
        outlet_count=max(story.source_count, 1),
        outlets=tuple(outlets.values()),
        recent_articles=recent,
        keywords=tuple(story.keywords or ()),
        titles=tuple(row[2] for row in rows),
    )


def story_texts(*, session: Session, stories: Mapping[int, str]) -> dict[int, list[str]]:
    """The texts of each story's own (not copied) articles, in one query: the article with the
    story's headline first, then the most representative. `stories`: id -> headline."""
    query = sa_select(
        col(Article.story_id),
        col(Article.title),
        col(Article.text),
        col(Article.summary),
        col(Article.story_score),
    ).where(
        col(Article.story_id).in_(list(stories)),
        col(Article.duplicate_of_id).is_(None),
        col(Article.extraction_status).in_(_IN_STORY),
    )
    rows = sorted(
        session.execute(query).all(),
        key=lambda r: (r[1] != stories.get(r[0] or 0), -(r[4] or 0.0)),
    )
    texts: dict[int, list[str]] = {story_id: [] for story_id in stories}
    for story_id, _, text, summary, _ in rows:
        if story_id is not None and (text or summary):
            texts[story_id].append(text or summary)
    return texts


def _host(url: str) -> str:
    return url.split("//", 1)[-1].split("/", 1)[0]


def _utc(moment: datetime | str) -> datetime:
    """An aggregate over a UTC column comes back naive (or as text) on SQLite."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def stale_before(now: datetime, lease_seconds: int) -> datetime:
    return now - timedelta(seconds=lease_seconds)
