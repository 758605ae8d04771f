"""Database tables (SQLModel). Times are stored in UTC and always read back timezone-aware."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint, text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC that comes back timezone-aware on every backend (SQLite too)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_column(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class SourceHealth(StrEnum):
    NEW = "new"
    OK = "ok"
    DEGRADED = "degraded"
    BACKING_OFF = "backing_off"
    BLOCKED = "blocked"
    GONE = "gone"
    DEAD = "dead"


class ExtractionStatus(StrEnum):
    PENDING = "pending"
    EXTRACTED = "extracted"  # text from the article page
    SUMMARY = "summary"  # extraction failed or the page was unusable: the feed's summary is kept
    FAILED = "failed"  # neither page text nor a summary
    DUPLICATE = "duplicate"  # exact copy of an article already stored
    BOILERPLATE = "boilerplate"  # a wall or error page, not an article: never part of a story


# Extracted originals that no story holds yet: the clustering backlog, taken in publication order.
AWAITING_STORY = text(
    "story_id IS NULL AND duplicate_of_id IS NULL AND extraction_status IN ('extracted', 'summary')"
)


class Source(SQLModel, table=True):
    __tablename__ = "sources"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    title: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    site_url: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    health: str = Field(default=SourceHealth.NEW.value, max_length=16)
    etag: str | None = Field(default=None, sa_column=Column(Text))
    last_modified: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = utc_column(nullable=False)
    next_poll_at: datetime = utc_column(nullable=False, index=True)
    last_polled_at: datetime | None = utc_column()
    last_success_at: datetime | None = utc_column()
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_error_at: datetime | None = utc_column()
    consecutive_errors: int = Field(default=0)
    poll_started_at: datetime | None = utc_column(index=True)  # lease of a poll in flight
    moved_to_url: str | None = Field(default=None, sa_column=Column(Text))  # 301/308 target seen
    moved_count: int = Field(default=0)  # consecutive polls that saw moved_to_url
    last_unconditional_at: datetime | None = utc_column()
    poll_interval_seconds: int | None = Field(default=None)


class Story(SQLModel, table=True):
    __tablename__ = "stories"
    __table_args__ = (
        UniqueConstraint("cluster_key", name="uq_stories_cluster_key"),
        Index("ix_stories_article_count", "article_count"),
        Index("ix_stories_language_last_seen", "language", "last_seen"),
    )

    id: int | None = Field(default=None, primary_key=True)
    headline: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    language: str | None = Field(default=None, max_length=8)
    first_seen: datetime = utc_column(nullable=False)
    last_seen: datetime = utc_column(nullable=False, index=True)
    article_count: int = Field(default=0)
    source_count: int = Field(default=0)
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    headline_score: float = Field(default=0.0)  # how well the headline's article represents it
    merged_into_id: int | None = Field(default=None, foreign_key="stories.id")
    # The clusterer's view of the story (aggregator.clustering.state.StoryProfile as JSON).
    cluster_key: str | None = Field(default=None, sa_column=Column(Text))
    profile: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class StoryIndexEntry(SQLModel, table=True):
    """Inverted index of the clusterer: a story under each of its top (language-prefixed) terms,
    with the story's last publication time so that lookups stay within the active window."""

    __tablename__ = "story_index"
    __table_args__ = (Index("ix_story_index_key_last", "key", "last_published"),)

    key: str = Field(primary_key=True, max_length=80)
    story_id: int = Field(primary_key=True, foreign_key="stories.id", index=True)
    last_published: datetime | None = utc_column()


class ArticleBand(SQLModel, table=True):
    """Locality-sensitive hashing bands of an article's MinHash, for near-duplicate lookups."""

    __tablename__ = "article_bands"
    __table_args__ = (Index("ix_article_bands_hash", "hash"),)

    article_id: int = Field(primary_key=True, foreign_key="articles.id")
    band: int = Field(primary_key=True)
    hash: str = Field(max_length=16)


class Article(SQLModel, table=True):
    __tablename__ = "articles"
    __table_args__ = (
        UniqueConstraint("source_id", "guid", name="uq_articles_source_guid"),
        Index("ix_articles_story_published", "story_id", "published_at"),
        Index("ix_articles_source_published", "source_id", "published_at"),
        Index("ix_articles_extraction_status", "extraction_status"),
        Index(
            "ix_articles_awaiting_story",
            "published_at",
            "id",
            sqlite_where=AWAITING_STORY,
            postgresql_where=AWAITING_STORY,
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="sources.id", index=True)
    guid: str = Field(sa_column=Column(Text, nullable=False))
    url: str = Field(sa_column=Column(Text, nullable=False))
    canonical_url: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    title: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    summary: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    author: str | None = Field(default=None, sa_column=Column(Text))
    language: str | None = Field(default=None, max_length=8)
    image_url: str | None = Field(default=None, sa_column=Column(Text))
    extraction_status: str = Field(default=ExtractionStatus.PENDING.value, max_length=16)
    fetch_error: str | None = Field(default=None, sa_column=Column(Text))
    content_hash: str | None = Field(default=None, max_length=64, index=True)
    entry_hash: str | None = Field(default=None, max_length=64)  # title+summary+link
    published_at: datetime | None = utc_column(index=True)
    discovered_at: datetime = utc_column(nullable=False)
    fetched_at: datetime | None = utc_column()
    fetch_retry_at: datetime | None = utc_column()  # a waiting fetch retry is due then
    story_id: int | None = Field(default=None, foreign_key="stories.id")
    story_score: float | None = Field(default=None)
    duplicate_of_id: int | None = Field(default=None, foreign_key="articles.id", index=True)
    minhash: list[int] | None = Field(default=None, sa_column=Column(JSON))


class ClusterTerm(SQLModel, table=True):
    """Document frequency of one term over all clustered articles (the IDF of the clusterer)."""

    __tablename__ = "cluster_terms"

    term: str = Field(primary_key=True, max_length=64)
    document_count: int = Field(default=0)


class Subscriber(SQLModel, table=True):
    __tablename__ = "subscribers"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    timezone: str = Field(default="UTC", max_length=64)
    send_hour: int = Field(default=7, ge=0, le=23)
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    max_stories: int = Field(default=10)
    active: bool = Field(default=True)  # False once unsubscribed
    created_at: datetime = utc_column(nullable=False)
    include_sources: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    exclude_sources: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    confirmed_at: datetime | None = utc_column()  # double opt-in: nothing is sent before
    confirmation_sent_at: datetime | None = utc_column()
    unsubscribed_at: datetime | None = utc_column()
    bounce_count: int = Field(default=0)  # permanent rejections of the address in a row
    paused_at: datetime | None = utc_column()  # paused after repeated bounces
    pause_reason: str | None = Field(default=None, sa_column=Column(Text))


class DigestDelivery(SQLModel, table=True):
    """One digest for one reader and local day; the unique key makes sending once claimable."""

    __tablename__ = "digest_deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "local_day", name="uq_digest_subscriber_day"),
        Index("ix_digest_deliveries_local_day", "local_day"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscribers.id", index=True)
    local_day: date
    status: str = Field(default="claimed", max_length=16)  # a DeliveryStatus
    message_id: str = Field(sa_column=Column(Text, nullable=False))
    story_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Distinct outlets of each sent story at sending time ({story id: outlets}).
    story_outlets: dict[str, int] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    error: str | None = Field(default=None, sa_column=Column(Text))  # why skipped or failed
    created_at: datetime = utc_column(nullable=False)
    sent_at: datetime | None = utc_column()
    claimed_at: datetime | None = utc_column()  # the lease of the send in flight
    attempts: int = Field(default=0)


class DeliveryStatus(StrEnum):
    CLAIMED = "claimed"  # a sender holds it (until its lease runs out)
    RETRY = "retry"  # a transient failure: free to be claimed again
    SENT = "sent"  # the SMTP server accepted it: never sent again
    SKIPPED = "skipped"  # too few stories, or nothing to send: reason in error
    FAILED = "failed"  # permanent rejection, or attempts used up: reason in error


class Tombstone(SQLModel, table=True):
    """An article purged by retention. Feeds that still carry its entry do not bring it back:
    each sighting renews the tombstone, which expires only once no feed has shown it for a
    retention period."""

    __tablename__ = "tombstones"
    __table_args__ = (Index("ix_tombstones_source_guid", "source_id", "guid"),)

    canonical_url: str = Field(sa_column=Column(Text, primary_key=True))
    source_id: int
    guid: str = Field(sa_column=Column(Text, nullable=False))
    purged_at: datetime = utc_column(nullable=False)
    last_seen_at: datetime = utc_column(nullable=False, index=True)
