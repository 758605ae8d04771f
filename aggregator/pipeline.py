"""The pipeline, one function per stage. Tasks, the CLI and the demo all call these.

    beat ─every minute─▶ schedule_due_feeds ─▶ poll_feed(source) ─▶ fetch_article(article)
                                                 │ 304 / nothing new     │ extract clean text
                                                 ▼                       ▼
                                            next poll time        dedup ─▶ cluster_article ─▶ story

Each function takes ids and a session, does its stage in the caller's transaction and returns
what should happen next (ids); the caller commits, then enqueues the follow-ups. Every stage is
safe to run twice: a second run finds its work done and returns nothing new.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session

from aggregator import store
from aggregator.clustering import tfidf
from aggregator.dedup import content_hash
from aggregator.extract import Extracted, extract_article
from aggregator.feeds import FeedError, ParsedEntry, ParsedFeed, parse_feed
from aggregator.fetch import Fetcher, FetchError
from aggregator.models import Article, ExtractionStatus, Source, SourceHealth, Story
from aggregator.schedule import PollBounds, next_poll_at
from aggregator.settings import Settings
from aggregator.urls import canonical_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollOutcome:
    source_id: int
    status: str  # "new", "not_modified", "error", "missing"
    new_article_ids: list[int] = field(default_factory=list)
    error: str | None = None


# ---------------------------------------------------------------- scheduling


def due_sources(*, session: Session, settings: Settings, now: datetime) -> list[int]:
    return store.due_source_ids(session=session, now=now, limit=settings.poll_batch_size)


# ---------------------------------------------------------------- polling


def poll_feed(
    source_id: int, *, session: Session, fetcher: Fetcher, settings: Settings, now: datetime
) -> PollOutcome:
    """Fetch one feed, store its new entries as pending articles, plan the next poll."""
    source = session.get(Source, source_id)
    if source is None:
        return PollOutcome(source_id, "missing")
    source.last_polled_at = now
    try:
        response = fetcher.fetch(
            source.url,
            max_bytes=settings.fetch_max_feed_bytes,
            etag=source.etag,
            last_modified=source.last_modified,
        )
        if response.not_modified:
            _record_success(source, settings=settings, now=now, ttl_minutes=None)
            return PollOutcome(source_id, "not_modified")
        if not response.ok:
            raise FeedError(f"HTTP {response.status}")
        feed = parse_feed(response.body, url=response.url, headers=response.headers)
    except (FetchError, FeedError) as exc:
        _record_error(source, str(exc), settings=settings, now=now)
        return PollOutcome(source_id, "error", error=str(exc))
    source.etag = response.headers.get("etag")
    source.last_modified = response.headers.get("last-modified")
    new_ids = _store_entries(source, feed, session=session, settings=settings, now=now)
    _record_success(source, settings=settings, now=now, ttl_minutes=feed.ttl_minutes)
    if feed.problem:
        source.health = SourceHealth.DEGRADED.value
        source.last_error = f"feed recovered from: {feed.problem}"
        source.last_error_at = now
    if not source.title:
        source.title = feed.title
        source.site_url = feed.site_url
    return PollOutcome(source_id, "new", new_ids)


def _store_entries(
    source: Source, feed: ParsedFeed, *, session: Session, settings: Settings, now: datetime
) -> list[int]:
    new_ids = []
    for entry in feed.entries[: settings.max_entries_per_poll]:
        article_id = _store_entry(source, entry, session=session, now=now)
        if article_id is not None:
            new_ids.append(article_id)
    return new_ids


def _store_entry(
    source: Source, entry: ParsedEntry, *, session: Session, now: datetime
) -> int | None:
    assert source.id is not None
    if not entry.link:
        return None
    canonical = canonical_url(entry.link)
    if store.article_exists(
        session=session, source_id=source.id, guid=entry.guid, canonical_url=canonical
    ):
        return None
    article = Article(
        source_id=source.id,
        guid=entry.guid,
        url=entry.link,
        canonical_url=canonical,
        title=entry.title,
        summary=entry.summary,
        author=entry.author,
        published_at=entry.published,
        discovered_at=now,
    )
    return store.insert_article(session=session, article=article)


def _record_success(
    source: Source, *, settings: Settings, now: datetime, ttl_minutes: int | None
) -> None:
    source.health = SourceHealth.OK.value
    source.last_success_at = now
    source.consecutive_errors = 0
    source.last_error = None
    hint = timedelta(minutes=ttl_minutes) if ttl_minutes else None
    source.next_poll_at = next_poll_at(
        now, bounds=_bounds(settings), server_hint=hint, jitter=random.uniform(0, 0.25)
    )


def _record_error(source: Source, error: str, *, settings: Settings, now: datetime) -> None:
    log.warning("poll of source %s failed: %s", source.id, error)
    source.consecutive_errors += 1
    source.health = SourceHealth.BACKING_OFF.value
    source.last_error = error
    source.last_error_at = now
    source.next_poll_at = next_poll_at(
        now,
        bounds=_bounds(settings),
        consecutive_errors=source.consecutive_errors,
        jitter=random.uniform(0, 0.25),
    )


def _bounds(settings: Settings) -> PollBounds:
    return PollBounds(
        timedelta(seconds=settings.poll_interval_min_seconds),
        timedelta(seconds=settings.poll_interval_max_seconds),
    )


# ---------------------------------------------------------------- fetching and extraction


def fetch_article(
    article_id: int, *, session: Session, fetcher: Fetcher, settings: Settings, now: datetime
) -> bool:
    """Fetch and extract one pending article and mark it if it is an exact copy of another.
    Returns whether the article goes on to clustering (a copy goes there to join its original)."""
    article = session.get(Article, article_id)
    if article is None or article.extraction_status != ExtractionStatus.PENDING.value:
        return False
    extracted, error = _download_and_extract(article.url, fetcher=fetcher, settings=settings)
    _apply_extraction(article, extracted, error, now=now)
    if article.extraction_status == ExtractionStatus.FAILED.value:
        return False
    _mark_if_duplicate(article, session=session)
    return True


def _download_and_extract(
    url: str, *, fetcher: Fetcher, settings: Settings
) -> tuple[Extracted | None, str | None]:
    try:
        response = fetcher.fetch(url, max_bytes=settings.fetch_max_page_bytes)
    except FetchError as exc:
        return None, str(exc)
    if not response.ok:
        return None, f"HTTP {response.status}"
    extracted = extract_article(response.body, url=response.url)
    return extracted, None if extracted else "no article text found on the page"


def _apply_extraction(
    article: Article, extracted: Extracted | None, error: str | None, *, now: datetime
) -> None:
    article.fetched_at = now
    article.fetch_error = error
    if extracted is not None:
        article.text = extracted.text
        article.title = article.title or extracted.title
        article.author = article.author or extracted.author
        article.language = extracted.language
        article.image_url = extracted.image_url
        article.published_at = article.published_at or extracted.published
        article.extraction_status = ExtractionStatus.EXTRACTED.value
    elif article.summary:
        article.text = article.summary
        article.extraction_status = ExtractionStatus.SUMMARY.value
    else:
        article.extraction_status = ExtractionStatus.FAILED.value
    article.published_at = article.published_at or article.discovered_at
    article.content_hash = content_hash(article.title, article.text)


def _mark_if_duplicate(article: Article, *, session: Session) -> None:
    assert article.id is not None and article.content_hash is not None
    original = store.original_with_hash(
        session=session, content_hash=article.content_hash, exclude_id=article.id
    )
    if original is not None:
        article.duplicate_of_id = original.id
        article.extraction_status = ExtractionStatus.DUPLICATE.value


# ---------------------------------------------------------------- clustering


def cluster_article(article_id: int, *, session: Session, settings: Settings) -> int | None:
    """Assign one extracted article to the most similar active story, or start a story.
    Returns the story id. Exact duplicates follow their original."""
    store.lock_clustering(session=session)
    article = session.get(Article, article_id)
    if article is None or article.story_id is not None:
        return article.story_id if article else None
    if article.duplicate_of_id is not None:
        return _follow_original(article, session=session)
    counts = tfidf.article_terms(article.title, article.text)
    documents, frequencies = store.add_document(session=session, terms=counts)
    vector = tfidf.tfidf_vector(counts, frequencies, documents)
    published = article.published_at or article.discovered_at
    since = published - timedelta(days=settings.cluster_window_days)
    candidates = store.active_stories(session=session, since=since, language=article.language)
    match = tfidf.best_match(
        vector,
        [tfidf.StoryVector(s.id or 0, s.centroid, s.article_count) for s in candidates],
        threshold=settings.cluster_threshold,
    )
    story = session.get(Story, match.story_id) if match.story_id else None
    story = _join_story(story, article, vector, session=session, published=published)
    article.story_score = match.score
    _gather_duplicates(article, story, session=session)
    return story.id


def _join_story(
    story: Story | None,
    article: Article,
    vector: dict[str, float],
    *,
    session: Session,
    published: datetime,
) -> Story:
    if story is None:
        story = Story(headline=article.title, language=article.language)
        story.first_seen = story.last_seen = published
    story.centroid = tfidf.updated_centroid(story.centroid, story.article_count, vector)
    story.article_count += 1
    story.first_seen = min(story.first_seen, published)
    story.last_seen = max(story.last_seen, published)
    session.add(story)
    session.flush()
    article.story_id = story.id
    session.flush()
    story.source_count = store.distinct_sources_in_story(session=session, story_id=story.id or 0)
    return story


def _gather_duplicates(original: Article, story: Story, *, session: Session) -> None:
    """Copies that arrived before their original was clustered join its story now."""
    for duplicate in store.unclustered_duplicates(session=session, original_id=original.id or 0):
        duplicate.story_id = story.id
        story.article_count += 1


def _follow_original(article: Article, *, session: Session) -> int | None:
    original = session.get(Article, article.duplicate_of_id)
    if original is None or original.story_id is None:
        return None
    article.story_id = original.story_id
    story = session.get(Story, original.story_id)
    if story is not None:
        story.article_count += 1
    return article.story_id
