"""The pipeline, one function per stage. Tasks, the CLI and the demo all call these.

    beat ─every minute─▶ schedule_due_feeds ─▶ poll_feed(source) ─▶ fetch_article(article)
                                                 │ 304 / nothing new     │ extract clean text
                                                 ▼                       ▼
                                            next poll time        dedup ─▶ cluster_article ─▶ story
    beat ─every 30 min─▶ repair_stories: merge stories of one event, split drifted ones

Each function takes ids and a session, does its stage in the caller's transaction and returns
what should happen next (ids); the caller commits, then enqueues the follow-ups. Every stage is
safe to run twice: a second run finds its work done and returns nothing new.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session

from aggregator import health, purge, retention, store
from aggregator.cluster_store import SqlClusterState
from aggregator.clustering import (
    ClusterDoc,
    ClusterLimits,
    ClusterModel,
    StoryClusterer,
    StoryProfile,
    load_default_model,
    regroup,
    repair,
)
from aggregator.clustering.features import DocVectors
from aggregator.clustering.summary import representativeness, story_keywords
from aggregator.clustering.text import extract_terms, names_among
from aggregator.dedup import (
    NEAR_DUPLICATE_JACCARD,
    boilerplate_reason,
    content_hash,
    estimated_jaccard,
    lsh_bands,
    minhash_signature,
)
from aggregator.extract import Extracted, extract_article
from aggregator.feeds import (
    FeedError,
    ParsedEntry,
    ParsedFeed,
    feed_links,
    is_feed,
    parse_feed,
    plausible_date,
    title_identity,
)
from aggregator.fetch import Fetcher, FetchError, FetchErrorKind, FetchResult
from aggregator.models import Article, ExtractionStatus, Source, SourceHealth, Story
from aggregator.schedule import WEEK, PollBounds, next_poll_at, server_hint
from aggregator.schedule import retry_after as schedule_retry_after
from aggregator.settings import Settings
from aggregator.storable import storable_text
from aggregator.urls import canonical_url, fits_key

log = logging.getLogger(__name__)
MAX_BATCHES_PER_TICK = 50  # poll_batch_size sources each


@dataclass(frozen=True)
class PollOutcome:
    source_id: int
    status: str  # "new", "not_modified", "error", "deferred", "skipped", "missing"
    new_article_ids: list[int] = field(default_factory=list)  # new, or moved: to (re)fetch
    error: str | None = None


class RetryLater(Exception):
    """A transient failure the task should retry (after `countdown` seconds, if given).
    `failed` is False when nothing failed (the host's request budget was spent): such a wait
    does not use up one of the article's attempts."""

    def __init__(self, reason: str, countdown: float | None = None, *, failed: bool = True) -> None:
        super().__init__(reason)
        self.countdown = countdown
        self.failed = failed


class LeaseLost(RuntimeError):
    """The poll outlived its lease and another poll took the source: roll this one back."""


# ---------------------------------------------------------------- scheduling


def due_sources(*, session: Session, settings: Settings, now: datetime) -> list[int]:
    """Sources due now that no live poll holds (read-only; see schedule_due_feeds)."""
    return store.due_source_ids(
        session=session, now=now, limit=settings.poll_batch_size, stale_before=_stale(settings, now)
    )


def schedule_due_feeds(
    *, session: Session, settings: Settings, now: datetime
) -> list[tuple[int, datetime]]:
    """Claim the poll lease of each due source, oldest first, and return (source, lease).
    A lease older than poll_lease_seconds is a lost poll: the watchdog claims it again."""
    claimed: list[tuple[int, datetime]] = []
    for _ in range(MAX_BATCHES_PER_TICK):
        batch = due_sources(session=session, settings=settings, now=now)
        stale = _stale(settings, now)
        for source_id in batch:
            if store.claim_source(
                session=session, source_id=source_id, now=now, stale_before=stale
            ):
                claimed.append((source_id, now))
        if len(batch) < settings.poll_batch_size:
            break
    return claimed


def _stale(settings: Settings, now: datetime) -> datetime:
    return now - timedelta(seconds=settings.poll_lease_seconds)


# ---------------------------------------------------------------- polling


def poll_feed(
    source_id: int,
    *,
    session: Session,
    fetcher: Fetcher,
    settings: Settings,
    now: datetime,
    lease: datetime | None = None,
) -> PollOutcome:
    """Fetch one feed, store its new entries as pending articles and its updated entries in
    place, record the source's health and plan the next poll; then give the lease back.
    Without a lease (a manual poll) the source is polled whatever its lease says."""
    source = session.get(Source, source_id)
    if source is None:
        return PollOutcome(source_id, "missing")
    if lease is not None and source.poll_started_at != lease:
        # Done already, or another poll holds it. A redelivered poll whose first run died after
        # its commit, before enqueueing the fetches, sends the source's pending articles on.
        pending = store.pending_article_ids(session=session, source_id=source_id)
        return PollOutcome(source_id, "skipped", pending)
    outcome = _poll_or_record(source, session=session, fetcher=fetcher, settings=settings, now=now)
    if lease is not None and not store.release_source(
        session=session, source_id=source_id, lease=lease
    ):
        raise LeaseLost(f"source {source_id}: lease taken over")
    return outcome


def _poll_or_record(
    source: Source, *, session: Session, fetcher: Fetcher, settings: Settings, now: datetime
) -> PollOutcome:
    """Poll the source; a poll that fails in an unforeseen way (a feed our code or the
    database cannot take) is rolled back, and the source records the error in its place, so
    that it backs off and shows in the source's health instead of failing unseen at every poll.
    The session must hold nothing else. Lost connections still raise (the task retries)."""
    source_id = source.id
    try:
        return _poll(source, session=session, fetcher=fetcher, settings=settings, now=now)
    except CONNECTION_ERRORS:
        raise
    except Exception as error:  # whatever the cause, the source records it
        log.exception("poll of source %s failed unexpectedly", source_id)
        session.rollback()
        source = session.get_one(Source, source_id)
        source.last_polled_at = now
        message = f"poll failed: {_described(error)}"
        return _record_error(
            source, health.ErrorClass.PERMANENT, message, None, settings=settings, now=now
        )


# A lost database connection (a restart, a failover) or Redis (which holds the per-host request
# budget) out of reach: the task's transaction rolls back and the task runs again a little later.
# These are never recorded as an article's or a source's own failure.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
)


def _described(error: Exception) -> str:
    """An error as one short line for a record: its class and the start of its message."""
    return " ".join(storable_text(f"{type(error).__name__}: {error}").split())[:400]


def _poll(
    source: Source, *, session: Session, fetcher: Fetcher, settings: Settings, now: datetime
) -> PollOutcome:
    assert source.id is not None
    source.last_polled_at = now
    conditional = _conditional(source, settings=settings, now=now)
    try:
        response = fetcher.fetch(
            source.url,
            max_bytes=settings.fetch_max_feed_bytes,
            etag=source.etag if conditional else None,
            last_modified=source.last_modified if conditional else None,
        )
    except FetchError as exc:
        if exc.kind is FetchErrorKind.HOST_BUSY:
            return _defer(source, settings=settings, now=now)
        error_class = health.classify_fetch_error(exc.kind.value)
        return _record_error(source, error_class, str(exc), None, settings=settings, now=now)
    if not conditional:
        source.last_unconditional_at = now
    return _handle_response(source, response, session=session, settings=settings, now=now)


def _handle_response(
    source: Source, response: FetchResult, *, session: Session, settings: Settings, now: datetime
) -> PollOutcome:
    assert source.id is not None
    hint = server_hint(response.headers, now=now)
    if not (response.ok or response.not_modified):
        challenge = health.looks_like_bot_challenge(response.headers, response.body)
        error_class = health.classify_status(response.status, challenge=challenge)
        error = f"HTTP {response.status}"
        return _record_error(source, error_class, error, hint, settings=settings, now=now)
    _follow_permanent_redirects(source, response, session=session, settings=settings)
    if response.not_modified:
        _record_success(source, None, hint, session=session, settings=settings, now=now)
        return PollOutcome(source.id, "not_modified")
    try:
        feed = parse_feed(response.body, url=response.url, headers=response.headers)
    except FeedError as exc:
        error_class = health.ErrorClass.PERMANENT
        return _record_error(source, error_class, str(exc), hint, settings=settings, now=now)
    source.etag = response.headers.get("etag")
    source.last_modified = response.headers.get("last-modified")
    new_ids = _store_entries(source, feed, session=session, settings=settings, now=now)
    hint = server_hint(response.headers, now=now, ttl_minutes=feed.ttl_minutes)
    _record_success(source, feed.problem, hint, session=session, settings=settings, now=now)
    if not source.title:
        source.title = feed.title
        source.site_url = feed.site_url
    return PollOutcome(source.id, "new", new_ids)


def _conditional(source: Source, *, settings: Settings, now: datetime) -> bool:
    """Send the validators, except every fetch_unconditional_seconds: some servers answer 304
    forever, whatever changed."""
    last = source.last_unconditional_at
    recent = last is not None and now - last < timedelta(
        seconds=settings.fetch_unconditional_seconds
    )
    return bool(source.etag or source.last_modified) and recent


def _follow_permanent_redirects(
    source: Source, response: FetchResult, *, session: Session, settings: Settings
) -> None:
    """A feed moves to its 301/308 target once the redirect was seen on enough polls in a row."""
    move = health.track_feed_move(
        source.moved_to_url,
        source.moved_count,
        health.permanent_target(response.redirects),
        confirmations=settings.feed_move_confirmations,
    )
    source.moved_to_url, source.moved_count = move.moved_to_url, move.moved_count
    if not move.new_url or not fits_key(move.new_url):
        return  # too long for sources.url's unique index: the old URL still leads there
    if not store.source_url_taken(session=session, url=move.new_url):
        log.info("source %s moved permanently: %s -> %s", source.id, source.url, move.new_url)
        source.url = move.new_url


def _store_entries(
    source: Source, feed: ParsedFeed, *, session: Session, settings: Settings, now: datetime
) -> list[int]:
    to_fetch = []
    expired_before = retention.retention_cutoff(settings, now)
    for claimed in feed.entries[: settings.max_entries_per_poll]:
        entry = replace(claimed, published=plausible_date(claimed.published, now))
        if entry.published is not None and entry.published < expired_before:
            continue  # retention would purge it at once
        article_id = _store_entry(
            source, entry, session=session, now=now, claimed_published=claimed.published
        )
        if article_id is not None:
            to_fetch.append(article_id)
    return to_fetch


def _store_entry(
    source: Source,
    entry: ParsedEntry,
    *,
    session: Session,
    now: datetime,
    claimed_published: datetime | None,
) -> int | None:
    """A new entry becomes a pending article; a known one is updated in place. Returns the id
    when the article needs (re)fetching. ``claimed_published`` is the feed's date as given,
    believed or not: an entry known by its title was keyed with it."""
    assert source.id is not None
    if not (entry.link or entry.summary):
        log.info("source %s: entry %r has no link and no text: skipped", source.id, entry.title)
        return None
    known = store.article_by_guid(session=session, source_id=source.id, guid=entry.guid)
    if known is None:
        known = _linkless_twin(source.id, entry, claimed_published, session=session)
    if known is not None:
        known.guid = entry.guid  # the same; or, for a twin, its identity from now on
        return _update_entry(known, entry, session=session)
    canonical = _entry_key(source.id, entry)
    if store.canonical_url_taken(session=session, canonical_url=canonical):
        return None
    tombstone = purge.find_tombstone(
        session=session, source_id=source.id, guid=entry.guid, canonical_url=canonical
    )
    if tombstone is not None:  # purged by retention: the sighting keeps the tombstone alive
        tombstone.last_seen_at = now
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
        entry_hash=entry.entry_hash,
    )
    return store.insert_article(session=session, article=article)


def _linkless_twin(
    source_id: int, entry: ParsedEntry, claimed_published: datetime | None, *, session: Session
) -> Article | None:
    """The link-less article this entry was before it gained a link. Without a GUID, such an
    entry was known by its title and the date its feed claimed (even one not believed, such as
    a date in the future); with its link, it is known by the link."""
    if not entry.link:
        return None
    identity = title_identity(entry.title, claimed_published)
    twin = store.article_by_guid(session=session, source_id=source_id, guid=identity)
    return twin if twin is not None and not twin.url else None


def _entry_key(source_id: int, entry: ParsedEntry) -> str:
    """The article's unique key: its canonical URL; for an entry without a link (RSS allows
    items that are only a text), the feed and the entry's identity within it."""
    if entry.link:
        return canonical_url(entry.link)
    identity = hashlib.sha256(entry.guid.encode()).hexdigest()[:32]
    return f"entry:{source_id}:{identity}"


def _update_entry(article: Article, entry: ParsedEntry, *, session: Session) -> int | None:
    """An entry edited in place (its hash changed) updates the article; a new link re-fetches."""
    if article.entry_hash == entry.entry_hash:
        return None
    known_before = article.entry_hash is not None  # rows stored before hashes have none
    article.entry_hash = entry.entry_hash
    if not known_before:
        return None
    article.title, article.summary = entry.title, entry.summary
    article.published_at = entry.published or article.published_at
    if not entry.link:
        if article.url:
            return None  # the page it linked to before is still its page
        article.extraction_status = ExtractionStatus.PENDING.value  # its text is the feed's
        return article.id
    canonical = canonical_url(entry.link)
    if canonical == article.canonical_url or store.canonical_url_taken(
        session=session, canonical_url=canonical
    ):
        return None
    article.url, article.canonical_url = entry.link, canonical
    article.extraction_status = ExtractionStatus.PENDING.value
    return article.id


def _record_success(
    source: Source,
    feed_problem: str | None,
    hint: timedelta | None,
    *,
    session: Session,
    settings: Settings,
    now: datetime,
) -> None:
    assert source.id is not None
    keep_degraded = feed_problem is None and source.health == SourceHealth.DEGRADED.value
    if not keep_degraded:  # a 304 of a feed that needed repair is still that feed
        source.health = health.health_after_success(feed_problem=feed_problem).value
        source.last_error = f"feed recovered from: {feed_problem}" if feed_problem else None
        source.last_error_at = now if feed_problem else source.last_error_at
    source.last_success_at = now
    source.consecutive_errors = 0
    weekly = store.entries_since(session=session, source_id=source.id, since=now - WEEK)
    _plan_next_poll(source, settings=settings, now=now, entries_last_week=weekly, hint=hint)


def _record_error(
    source: Source,
    error_class: health.ErrorClass,
    error: str,
    hint: timedelta | None,
    *,
    settings: Settings,
    now: datetime,
) -> PollOutcome:
    assert source.id is not None
    log.warning("poll of source %s failed (%s): %s", source.id, error_class.value, error)
    source.consecutive_errors += 1
    source.health = health.health_after_error(
        error_class,
        last_success_at=source.last_success_at or source.created_at,
        now=now,
        dead_after=timedelta(days=settings.poll_dead_after_days),
    ).value
    source.last_error = error
    source.last_error_at = now
    _plan_next_poll(source, settings=settings, now=now, hint=hint)
    return PollOutcome(source.id, "error", error=error)


def _defer(source: Source, *, settings: Settings, now: datetime) -> PollOutcome:
    """The host is over its request budget: poll again shortly; not an error."""
    assert source.id is not None
    delay = timedelta(seconds=settings.poll_defer_seconds)
    source.next_poll_at = now + delay * (1 + random.uniform(0, settings.poll_jitter))
    return PollOutcome(source.id, "deferred")


def _plan_next_poll(
    source: Source,
    *,
    settings: Settings,
    now: datetime,
    hint: timedelta | None,
    entries_last_week: int | None = None,
) -> None:
    source.next_poll_at = next_poll_at(
        now,
        bounds=_bounds(settings),
        entries_last_week=entries_last_week,
        consecutive_errors=source.consecutive_errors,
        server_hint=hint,
        jitter=random.uniform(0, settings.poll_jitter),
    )
    source.poll_interval_seconds = int((source.next_poll_at - now).total_seconds())


def _bounds(settings: Settings) -> PollBounds:
    return PollBounds(
        timedelta(seconds=settings.poll_interval_min_seconds),
        timedelta(seconds=settings.poll_interval_max_seconds),
        timedelta(seconds=settings.poll_max_backoff_seconds),
    )


# ---------------------------------------------------------------- feed discovery


def discover_feed(url: str, *, fetcher: Fetcher, settings: Settings) -> str:
    """The feed behind url: url itself when it is a feed, else the first feed its page
    announces (<link rel="alternate">) or found at a common path. Raises FeedError."""
    response = fetcher.fetch(url, max_bytes=settings.fetch_max_feed_bytes)
    if response.ok and is_feed(response.body, url=response.url, headers=response.headers):
        return url
    page = response.body if response.ok else b""
    for candidate in feed_links(page, base_url=response.url):
        try:
            found = fetcher.fetch(candidate, max_bytes=settings.fetch_max_feed_bytes)
        except FetchError:
            continue
        if found.ok and is_feed(found.body, url=found.url, headers=found.headers):
            return candidate
    raise FeedError(f"no feed found at {url}")


# ---------------------------------------------------------------- fetching and extraction


def fetch_article(
    article_id: int,
    *,
    session: Session,
    fetcher: Fetcher,
    settings: Settings,
    now: datetime,
    final_attempt: bool = True,
) -> bool:
    """Fetch and extract one pending article and mark it if it is an exact copy of another.
    Returns whether the article goes on to clustering (a copy goes there to join its original).
    Raises RetryLater on a transient failure unless this is the final attempt, and whenever
    the host's request budget is spent (waiting for it is no failure: a large backlog from one
    host is fetched at the host's pace, however long that takes, and none of it is dropped)."""
    article = session.get(Article, article_id)
    if article is None:
        return False
    if article.extraction_status != ExtractionStatus.PENDING.value:
        # Fetched already: a redelivered fetch whose first run died after its commit, before
        # enqueueing the clustering, sends the article on (clustering it twice is harmless).
        return article.story_id is None and article.extraction_status in _CLUSTERABLE
    if article.url:
        extracted, error = _download_and_extract(
            article.url, fetcher=fetcher, settings=settings, now=now, final_attempt=final_attempt
        )
    else:  # a feed item without a link: the feed's text is all there is
        extracted, error = None, None if article.summary else "the feed's item has no text"
    return _store_extraction_or_record(article, extracted, error, session=session, now=now)


def _store_extraction_or_record(
    article: Article,
    extracted: Extracted | None,
    error: str | None,
    *,
    session: Session,
    now: datetime,
) -> bool:
    """Store what the fetch gave; if the database refuses it (or anything else unforeseen
    fails), the session is rolled back and the article recorded as failed with the reason,
    instead of being fetched again and again. The session must hold nothing else. Lost
    connections still raise (the task retries)."""
    article_id = article.id
    try:
        _apply_extraction(article, extracted, error, now=now)
        if article.extraction_status == ExtractionStatus.FAILED.value:
            return False
        _mark_if_duplicate(article, session=session)
        session.flush()
        return True
    except CONNECTION_ERRORS:
        raise
    except Exception as failure:  # whatever the cause, the article is recorded
        log.exception("storing the fetch of article %s failed", article_id)
        session.rollback()
        article = session.get_one(Article, article_id)
        article.fetched_at = now
        article.extraction_status = ExtractionStatus.FAILED.value
        article.fetch_error = f"storing the fetch failed: {_described(failure)}"
        return False


def note_fetch_retry(article_id: int, *, session: Session, due: datetime) -> None:
    """Record when the article's waiting fetch retry is due (the sweep for lost tasks leaves
    it alone until then)."""
    article = session.get(Article, article_id)
    if article is not None and article.extraction_status == ExtractionStatus.PENDING.value:
        article.fetch_retry_at = due


_CLUSTERABLE = {
    ExtractionStatus.EXTRACTED.value,
    ExtractionStatus.SUMMARY.value,
    ExtractionStatus.DUPLICATE.value,
}


def _download_and_extract(
    url: str, *, fetcher: Fetcher, settings: Settings, now: datetime, final_attempt: bool
) -> tuple[Extracted | None, str | None]:
    try:
        response = fetcher.fetch(url, max_bytes=settings.fetch_max_page_bytes, obey_robots=True)
    except FetchError as exc:
        if exc.kind is FetchErrorKind.HOST_BUSY:
            defer = settings.poll_defer_seconds * random.uniform(1.0, 2.0)  # spread a backlog
            raise RetryLater(str(exc), defer, failed=False) from exc
        if health.is_transient(health.classify_fetch_error(exc.kind)):
            _retry_unless_final(str(exc), final_attempt)
        return None, str(exc)
    if not response.ok:
        if health.is_transient(health.classify_status(response.status)):
            wait = schedule_retry_after(response.headers.get("retry-after", ""), now=now)
            countdown = wait.total_seconds() if wait else None
            _retry_unless_final(f"HTTP {response.status}", final_attempt, countdown)
        return None, f"HTTP {response.status}"
    try:
        extracted = extract_article(response.body, url=response.url)
    except Exception as error:  # a page the extractor cannot take: the feed's summary stays
        log.exception("extraction of %s failed", url)
        return None, f"extraction failed: {_described(error)}"
    return extracted, None if extracted else "no article text found on the page"


def _retry_unless_final(reason: str, final_attempt: bool, countdown: float | None = None) -> None:
    if not final_attempt:
        raise RetryLater(reason, countdown)


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
        article.published_at = article.published_at or plausible_date(extracted.published, now)
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


@dataclass(frozen=True)
class ClusterStep:
    done: bool  # the article has had its turn; otherwise an older one took this step
    story_id: int | None = None
    waiting: bool = False  # nothing done: an article published earlier is still being fetched


def cluster_next(
    article_id: int,
    *,
    session: Session,
    settings: Settings,
    now: datetime,
    wait_for_fetches: bool = True,
) -> ClusterStep:
    """One step of the clustering consumer on behalf of one article. The backlog goes in
    publication order whichever task reaches it first, as the clusterer expects its stream: while
    an article published earlier awaits its story, that one is clustered in this step (the caller
    commits and steps again); then the article itself. While an article published before the
    next one is still being fetched (found by a poll less than cluster_max_wait_seconds ago, as
    in a new feed's backfill), the step waits for it instead."""
    store.lock_clustering(session=session)
    article = session.get(Article, article_id)
    if article is None or article.extraction_status not in store.CLUSTERED_STATUSES:
        return ClusterStep(done=True)  # gone, or settled without a story (wall page, failure)
    if article.story_id is not None:
        return ClusterStep(done=True, story_id=article.story_id)
    next_id = store.oldest_awaiting_story(session=session, up_to=article) or article_id
    if wait_for_fetches and _earlier_fetch_pending(
        next_id, session=session, settings=settings, now=now
    ):
        return ClusterStep(done=False, waiting=True)
    story_id = _cluster_or_record(next_id, session=session, settings=settings, now=now)
    if next_id != article_id:
        return ClusterStep(done=False)
    return ClusterStep(done=True, story_id=story_id)


def _earlier_fetch_pending(
    article_id: int, *, session: Session, settings: Settings, now: datetime
) -> bool:
    article = session.get(Article, article_id)
    if article is None or article.published_at is None:
        return False
    return store.fetch_pending_before(
        session=session,
        published=article.published_at,
        discovered_since=now - timedelta(seconds=settings.cluster_max_wait_seconds),
    )


def _cluster_or_record(
    article_id: int, *, session: Session, settings: Settings, now: datetime
) -> int | None:
    """Cluster one article; one that makes the clusterer fail is recorded as failed, so that it
    neither blocks the backlog behind it nor comes back. Lost connections still raise."""
    try:
        with session.begin_nested():
            return _cluster_locked(article_id, session=session, settings=settings, now=now)
    except CONNECTION_ERRORS:
        raise
    except Exception as error:  # whatever the cause, the article is recorded
        log.exception("clustering of article %s failed", article_id)
        article = session.get(Article, article_id)
        if article is not None:
            article.extraction_status = ExtractionStatus.FAILED.value
            article.fetch_error = f"clustering failed: {type(error).__name__}: {error}"[:500]
            _settle_waiting_copies(article, session=session)
        return None


def cluster_article(
    article_id: int,
    *,
    session: Session,
    settings: Settings,
    now: datetime,
    model: ClusterModel | None = None,
) -> int | None:
    """Assign one extracted article to a story: a copy joins its original's story, a wall or
    error page joins none, anything else goes through the story clusterer (with the shipped
    model, unless ``model``: a model trained without a file, scored on it). Returns the story
    id."""
    store.lock_clustering(session=session)
    return _cluster_locked(article_id, session=session, settings=settings, now=now, model=model)


def _cluster_locked(
    article_id: int,
    *,
    session: Session,
    settings: Settings,
    now: datetime,
    model: ClusterModel | None = None,
) -> int | None:
    article = session.get(Article, article_id)
    if article is None or article.story_id is not None:
        return article.story_id if article else None
    if article.duplicate_of_id is None:
        if _mark_if_boilerplate(article):
            _settle_waiting_copies(article, session=session)
            return None
        _mark_if_near_duplicate(article, session=session)
    if article.duplicate_of_id is not None:
        return _follow_original(article, session=session)
    story = _assign_story(article, session=session, settings=settings, now=now, model=model)
    _gather_duplicates(article, story, session=session)
    return story.id


def _mark_if_boilerplate(article: Article) -> bool:
    reason = boilerplate_reason(article.title, article.text)
    if reason is not None:
        article.extraction_status = ExtractionStatus.BOILERPLATE.value
        article.fetch_error = reason
    return reason is not None


def _mark_if_near_duplicate(article: Article, *, session: Session) -> None:
    """Find an earlier article with nearly the same text (MinHash LSH) and mark this a copy."""
    assert article.id is not None
    signature = minhash_signature(article.text)
    bands = lsh_bands(signature)
    candidates = store.articles_sharing_bands(session=session, bands=bands, exclude_id=article.id)
    scored = [(estimated_jaccard(signature, c.minhash or []), c) for c in candidates]
    similar = [(score, c) for score, c in scored if score >= NEAR_DUPLICATE_JACCARD]
    if similar:
        original = max(similar, key=lambda pair: (pair[0], -(pair[1].id or 0)))[1]
        article.duplicate_of_id = original.duplicate_of_id or original.id
    article.minhash = signature
    store.add_article_bands(session=session, article_id=article.id, bands=bands)


def _assign_story(
    article: Article,
    *,
    session: Session,
    settings: Settings,
    now: datetime,
    model: ClusterModel | None,
) -> Story:
    state = SqlClusterState(session, now=now)
    clusterer = StoryClusterer(
        state,
        model or load_default_model(),
        window=timedelta(days=settings.cluster_window_days),
    )
    doc = _cluster_doc(article)
    vectors = clusterer.vectorise(doc)
    assignment = clusterer.place(doc.key, vectors, clusterer.score_candidates(vectors))
    story = state.story_row(assignment.story_key)
    profile = state.story(assignment.story_key)
    assert story is not None and profile is not None
    article.story_id = story.id
    article.story_score = assignment.score
    session.flush()
    _update_story(story, article, profile, representativeness(vectors, profile), session=session)
    return story


def _cluster_doc(article: Article) -> ClusterDoc:
    return ClusterDoc(
        key=str(article.id),
        title=article.title,
        text=article.text,
        published=article.published_at,
        source=str(article.source_id),
        language=article.language,
    )


def _update_story(
    story: Story, article: Article, profile: StoryProfile, fit: float, *, session: Session
) -> None:
    published = article.published_at or article.discovered_at
    story.article_count += 1
    story.first_seen = min(story.first_seen, published)
    story.last_seen = max(story.last_seen, published)
    story.source_count = store.distinct_sources_in_story(session=session, story_id=story.id or 0)
    story.keywords = story_keywords(profile)
    if story.article_count == 1 or fit > story.headline_score:
        story.headline, story.headline_score = article.title, fit


def _gather_duplicates(original: Article, story: Story, *, session: Session) -> None:
    """Copies that arrived before their original was clustered join its story now."""
    for duplicate in store.unclustered_duplicates(session=session, original_id=original.id or 0):
        duplicate.story_id = story.id
        story.article_count += 1


def _settle_waiting_copies(original: Article, *, session: Session) -> None:
    """Copies that wait for their original's story get its verdict instead: it has none."""
    for copy in store.unclustered_duplicates(session=session, original_id=original.id or 0):
        _settle_as_copy(copy, original)


def _settle_as_copy(copy: Article, original: Article) -> None:
    """A copy of a page that no story will hold (a wall page, or a text the clusterer failed
    on) takes its original's status, so that it does not wait for a story forever."""
    copy.extraction_status = original.extraction_status
    copy.fetch_error = f"copy of article {original.id}: {original.fetch_error}"[:500]


def _follow_original(article: Article, *, session: Session) -> int | None:
    original = session.get(Article, article.duplicate_of_id)
    if original is not None and original.extraction_status not in store.CLUSTERED_STATUSES:
        _settle_as_copy(article, original)
        return None
    if original is None or original.story_id is None:
        return None  # the original's clustering will gather this copy
    article.story_id = original.story_id
    story = session.get(Story, original.story_id)
    if story is not None:
        story.article_count += 1
        story.last_seen = max(story.last_seen, article.published_at or article.discovered_at)
    return article.story_id


# ---------------------------------------------------------------- story repair


@dataclass(frozen=True)
class RepairReport:
    """What one repair changed: story ids, (merged story, survivor) and (story, split-off), and
    the stories that got a new headline."""

    merged: list[tuple[int, int]] = field(default_factory=list)
    split: list[tuple[int, int]] = field(default_factory=list)
    headlines: list[int] = field(default_factory=list)
    rejoined: list[tuple[int, int]] = field(default_factory=list)  # (lone story, its new story)
    regrouped: list[tuple[int, int]] = field(default_factory=list)  # (article, its new story)


@dataclass
class RegroupReport:
    """What regrouping changed: (article, its new story), (emptied story, the story that took
    most of its articles) and (story, a story made for articles that left it)."""

    moved: list[tuple[int, int]] = field(default_factory=list)
    merged: list[tuple[int, int]] = field(default_factory=list)
    split: list[tuple[int, int]] = field(default_factory=list)
    stories: set[int] = field(default_factory=set)  # the stories it regrouped, new ones too


REPAIR_EVERY = timedelta(minutes=30)  # beat's schedule for repair_stories


def repair_stories(
    *, session: Session, settings: Settings, now: datetime, model: ClusterModel | None = None
) -> RepairReport:
    """Among the stories active in the repair window: cluster the articles of the stories that
    began in it again, all at once, with the pair model (``model``, by default the shipped one;
    see _regroup_recent), split off the articles of stories that drifted onto another event,
    merge stories that are one event, then move each lone article to the story it would join
    if it arrived now. A merged or emptied story keeps its row and points at its survivor."""
    store.lock_clustering(session=session)
    state = SqlClusterState(session, now=now)
    limits = ClusterLimits()  # the clusterer's, so repaired profiles look like streamed ones
    model = model or load_default_model()
    candidates = _repair_candidates(session=session, settings=settings, now=now)
    headlines = {story.id: story.headline for story in candidates}
    since = now - timedelta(hours=settings.cluster_repair_window_hours)
    regrouped = _regroup_recent(
        candidates, state, model, session=session, settings=settings, since=since, limits=limits
    )
    candidates = _repair_candidates(session=session, settings=settings, now=now)
    covered = regrouped.stories  # the model judged their articles together: rules do not undo it
    split = [
        pair
        for story in candidates
        for pair in _split_story(story, state, session=session, limits=limits, keep=covered)
    ]
    stories = _repair_candidates(session=session, settings=settings, now=now)
    profiles = [StoryProfile.from_json(story.profile) for story in stories]
    settled = {story.cluster_key or "" for story in stories if story.id in covered}
    merged = [
        _merge_stories(loser, survivor, state, session=session, limits=limits)
        for loser, survivor in repair.merge_pairs(profiles, limits=limits, settled=settled)
    ]
    rejoined = _rejoin_lone_articles(
        _repair_candidates(session=session, settings=settings, now=now),
        state,
        model,
        session=session,
        settings=settings,
        limits=limits,
    )
    renamed = [
        s.id or 0
        for s in candidates
        if s.merged_into_id is None and s.headline != headlines.get(s.id, s.headline)
    ]
    merged, split = regrouped.merged + merged, regrouped.split + split
    if merged or split or rejoined or renamed or regrouped.moved:
        log.info(
            "story repair: articles regrouped %s, merged %s, split %s, lone articles moved %s,"
            " new headlines %s",
            regrouped.moved,
            merged,
            split,
            rejoined,
            renamed,
        )
    return RepairReport(merged, split, renamed, rejoined, regrouped.moved)


def _regroup_recent(
    stories: Sequence[Story],
    state: SqlClusterState,
    model: ClusterModel,
    *,
    session: Session,
    settings: Settings,
    since: datetime,
    limits: ClusterLimits,
) -> RegroupReport:
    """Cluster the articles of those of ``stories`` that began since ``since`` (at most
    ``cluster_regroup_max_articles``, see _recent_originals) again, all at once (see
    regroup.py), and make the groups the stories: each group keeps the story that holds most of
    it, a group that none holds most of gets a new story, and a story left with no article
    redirects to the story that took most of them. Copies follow their originals."""
    members = _recent_originals(stories, since, settings.cluster_regroup_max_articles, session)
    if len(members) < 2:
        return RegroupReport()
    clusterer = StoryClusterer(state, model, limits=limits)
    vectors = {a.id or 0: clusterer.weigh(_cluster_doc(a)) for a, _ in members}
    wide = replace(limits, shortlist=limits.candidates)  # every candidate is a pair to score
    affinities = regroup.pair_affinities(vectors, model, clusterer.background(), wide)
    groups = regroup.average_linkage(list(vectors), affinities, model.linkage_threshold)
    current = {a.id or 0: story.cluster_key or "" for a, story in members}
    plan = regroup.matched_groups(groups, current)
    report = _apply_regrouping(plan, members, state, session=session, limits=limits)
    report.stories |= {story.id or 0 for _, story in members}
    report.stories |= {story for _, story in report.split}
    return report


def _recent_originals(
    stories: Sequence[Story], since: datetime, limit: int, session: Session
) -> list[tuple[Article, Story]]:
    """The articles (no copies) of the stories whose every article was published since
    ``since``, oldest first, each with its story; of more than ``limit`` articles, the latest
    stories' that fit in it. A story with older articles stays as it is: streaming joined
    them with the evidence of those articles, which regrouping would not see."""
    young = []
    for story in stories:
        articles = store.articles_in_story(session=session, story_id=story.id or 0)
        originals = [a for a in articles if a.duplicate_of_id is None]
        if articles and all(_article_time(a) >= since for a in articles):
            young.append((min(_article_time(a) for a in articles), story.id or 0, originals))
    young.sort(key=lambda item: item[:2], reverse=True)  # the latest stories first
    found: list[tuple[Article, Story]] = []
    by_id = {story.id or 0: story for story in stories}
    for _, story_id, originals in young:
        if len(found) + len(originals) > limit:
            break
        found += [(article, by_id[story_id]) for article in originals]
    found.sort(key=lambda pair: (_article_time(pair[0]), pair[0].id or 0))
    return found


def _article_time(article: Article) -> datetime:
    return article.published_at or article.discovered_at


def _apply_regrouping(
    plan: Sequence[tuple[str | None, list[int]]],
    members: Sequence[tuple[Article, Story]],
    state: SqlClusterState,
    *,
    session: Session,
    limits: ClusterLimits,
) -> RegroupReport:
    """Move each group's articles (with their copies) to the group's story, then rebuild
    every story that changed, or retire it if it was left empty."""
    articles = {a.id or 0: a for a, _ in members}
    story_of = {a.id or 0: story for a, story in members}
    report = RegroupReport()
    taken: dict[int, dict[int, int]] = {}  # story id -> {story that took its articles: count}
    changed: dict[int, Story] = {}
    for key, group in plan:
        target = state.story_row(key) if key else None
        movers = [i for i in group if target is None or story_of[i].id != target.id]
        if not movers:
            continue
        if target is None:
            language = story_of[movers[0]].language
            target = _new_story(state, f"regroup-{movers[0]}", language)
            report.split.append((story_of[movers[0]].id or 0, target.id or 0))
        changed[target.id or 0] = target
        for article_id in movers:
            origin = story_of[article_id]
            changed[origin.id or 0] = origin
            counts = taken.setdefault(origin.id or 0, {})
            counts[target.id or 0] = counts.get(target.id or 0, 0) + 1
            _move_with_copies(articles[article_id], target, session=session)
            report.moved.append((article_id, target.id or 0))
    session.flush()
    for story_id, story in changed.items():
        remaining = store.articles_in_story(session=session, story_id=story_id)
        core = _original_members(remaining, state)
        if core:
            assert story.cluster_key is not None
            _rebuild_story(story, story.cluster_key, core, state, session=session, limits=limits)
            continue
        survivor = changed[max(taken[story_id].items(), key=lambda item: item[1])[0]]
        for article in remaining:  # copies whose original was elsewhere
            article.story_id = survivor.id
        report.merged.append(_retire_empty_story(story, survivor, session=session))
    return report


def _new_story(state: SqlClusterState, base: str, language: str | None) -> Story:
    """A new, empty story whose cluster key is ``base`` (or ``base-2``, ... if taken)."""
    key = _free_cluster_key(state, base)
    state.save_story(StoryProfile(key=key, language=language))
    story = state.story_row(key)
    assert story is not None and story.id is not None
    return story


def _move_with_copies(article: Article, target: Story, *, session: Session) -> None:
    article.story_id = target.id
    for copy in store.copies_of(session=session, original_id=article.id or 0):
        if copy.story_id is not None:  # a copy waiting for its original's story stays waiting
            copy.story_id = target.id


def _retire_empty_story(story: Story, survivor: Story, *, session: Session) -> tuple[int, int]:
    """An emptied story redirects to ``survivor`` and leaves the index."""
    assert story.id is not None and survivor.id is not None
    story.merged_into_id, story.profile = survivor.id, {}
    story.article_count = story.source_count = 0
    session.flush()
    store.retire_story(session=session, story_id=story.id, survivor_id=survivor.id)
    return story.id, survivor.id


def _rejoin_lone_articles(
    stories: Sequence[Story],
    state: SqlClusterState,
    model: ClusterModel,
    *,
    session: Session,
    settings: Settings,
    limits: ClusterLimits,
) -> list[tuple[int, int]]:
    """Merge each one-article story into the story its article would join if it arrived now.
    Returns (lone story, new story) ids."""
    window = timedelta(days=settings.cluster_window_days)
    clusterer = StoryClusterer(state, model, window=window, limits=limits)
    moves = []
    for story in stories:
        keys = _home_of_lone_article(story, clusterer, session=session)
        if keys is not None:
            moves.append(_merge_stories(*keys, state, session=session, limits=limits))
    return moves


def _home_of_lone_article(
    story: Story, clusterer: StoryClusterer, *, session: Session
) -> tuple[str, str] | None:
    """(the story's key, the key of the story its one article would join if it arrived now),
    for a story of one article (copies aside); None if it has more or the article would stay.

    When the article came, the story it belongs to may not have had the reports that show it;
    the model decides again with the stories as they are now. Only one-article stories move:
    moving two or three articles that each prefer the same story cost precision on every dev
    file, and a larger story is the merge rules' business."""
    assert story.cluster_key is not None
    if story.merged_into_id is not None:
        return None
    articles = store.articles_in_story(session=session, story_id=story.id or 0)
    originals = [article for article in articles if article.duplicate_of_id is None]
    if len(originals) != 1:
        return None
    home = clusterer.home_elsewhere(
        clusterer.weigh(_cluster_doc(originals[0])), current=story.cluster_key
    )
    return None if home is None else (story.cluster_key, home.story.key)


def _repair_candidates(*, session: Session, settings: Settings, now: datetime) -> list[Story]:
    since = now - timedelta(hours=settings.cluster_repair_window_hours)
    limit = settings.cluster_repair_max_stories
    return store.active_stories(session=session, since=since, limit=limit)


def _split_story(
    story: Story,
    state: SqlClusterState,
    *,
    session: Session,
    limits: ClusterLimits,
    keep: Collection[int] = (),
) -> list[tuple[int, int]]:
    """Move the groups of articles that left the story into stories of their own; the core
    keeps the story, with a profile rebuilt from its articles. Returns (story, new story). A
    story in ``keep`` is not split, only gets its headline elected again."""
    assert story.id is not None and story.cluster_key is not None
    articles = store.articles_in_story(session=session, story_id=story.id)
    originals = _original_members(articles, state)
    vectors = {a.id or 0: v for a, v in originals}
    leaving = (
        [] if story.id in keep else repair.split_members(vectors) or _twin_events(vectors, state)
    )
    if not leaving:
        _elect_headline(story, originals, limits)
        return []
    by_id = {a.id or 0: a for a, _ in originals}
    new_ids = []
    for group in leaving:
        members = [(by_id[i], vectors[i]) for i in group]
        new_ids.append(_split_off(members, articles, story, state, session=session, limits=limits))
    left = {article_id for group in leaving for article_id in group}
    core = [(a, v) for a, v in originals if a.id not in left]
    _rebuild_story(story, story.cluster_key, core, state, session=session, limits=limits)
    return [(story.id, new_id) for new_id in new_ids]


def _twin_events(vectors: Mapping[int, DocVectors], state: SqlClusterState) -> list[list[int]]:
    """The articles of a second event of the same kind, as a group that leaves (see
    repair.twin_split), or none."""
    names = {key: names_among(v.entities) for key, v in vectors.items()}
    frequencies = state.document_frequencies({t for terms in names.values() for t in terms})
    twin = repair.twin_split(names, frequencies)
    return [twin] if twin else []


def _original_members(
    articles: Sequence[Article], state: SqlClusterState
) -> list[tuple[Article, DocVectors]]:
    """The articles that are no copies, with their vectors."""
    originals = [a for a in articles if a.duplicate_of_id is None]
    vectors = _member_vectors(originals, state)
    return [(a, vectors[a.id or 0]) for a in originals]


def _member_vectors(articles: list[Article], state: SqlClusterState) -> dict[int, DocVectors]:
    """The articles' vectors under today's document frequencies (nothing is counted again)."""
    bags = {a.id or 0: extract_terms(a.title, a.text) for a in articles}
    frequencies = state.document_frequencies({t for b in bags.values() for t in b.all_terms()})
    documents = state.document_count()
    return {
        a.id or 0: repair.weigh(
            bags[a.id or 0],
            frequencies,
            documents,
            published=a.published_at or a.discovered_at,
            language=a.language,
        )
        for a in articles
    }


def _split_off(
    members: list[tuple[Article, DocVectors]],
    articles: Sequence[Article],
    story: Story,
    state: SqlClusterState,
    *,
    session: Session,
    limits: ClusterLimits,
) -> int:
    """A new story for `members` (with their copies); returns its id."""
    new = _new_story(state, f"split-{members[0][0].id}", story.language)
    assert new.id is not None and new.cluster_key is not None
    moving = {article.id for article, _ in members}
    for article in articles:
        if article.id in moving or article.duplicate_of_id in moving:
            article.story_id = new.id
    _rebuild_story(new, new.cluster_key, members, state, session=session, limits=limits)
    return new.id


def _free_cluster_key(state: SqlClusterState, base: str) -> str:
    key, n = base, 1
    while state.story_row(key) is not None:
        n += 1
        key = f"{base}-{n}"
    return key


def _rebuild_story(
    story: Story,
    key: str,
    members: list[tuple[Article, DocVectors]],
    state: SqlClusterState,
    *,
    session: Session,
    limits: ClusterLimits,
) -> None:
    """The story's profile, headline and figures, from its (remaining) member articles."""
    profile = repair.profile_of(key, story.language, [v for _, v in members], limits)
    state.save_story(profile)
    story.headline_score, story.headline = _most_representative(members, profile)
    _refresh_story(story, profile, session=session)


def _elect_headline(
    story: Story, members: list[tuple[Article, DocVectors]], limits: ClusterLimits
) -> None:
    """The title of the article closest to the centre of all the story's articles. Streaming
    keeps the first article's title (no later one fits the story better than the first fits its
    one-article profile), so the repair pass elects again, whatever order the articles came in."""
    if len(members) < 2:
        return
    centre = repair.profile_of("", story.language, [v for _, v in members], limits)
    score, headline = _most_representative(members, centre)
    if headline != story.headline:  # an unchanged story is not written again
        story.headline, story.headline_score = headline, score


def _most_representative(
    members: list[tuple[Article, DocVectors]], profile: StoryProfile
) -> tuple[float, str]:
    """(fit, title) of the member that fits the profile best; ties go to the earliest."""
    fits = [
        (representativeness(vectors, profile), -n, a.title)
        for n, (a, vectors) in enumerate(members)
    ]
    fit, _, title = max(fits)
    return fit, title


def _merge_stories(
    loser_key: str,
    survivor_key: str,
    state: SqlClusterState,
    *,
    session: Session,
    limits: ClusterLimits,
) -> tuple[int, int]:
    """Move the loser's articles to the survivor, whose profile becomes the union; the loser
    leaves the index and redirects to the survivor. Returns (loser, survivor) ids."""
    loser = state.story_row(loser_key)
    survivor = state.story_row(survivor_key)
    assert loser is not None and loser.id is not None
    assert survivor is not None and survivor.id is not None
    profile = repair.merged_profile(
        StoryProfile.from_json(survivor.profile), StoryProfile.from_json(loser.profile), limits
    )
    state.save_story(profile)
    for article in store.articles_in_story(session=session, story_id=loser.id):
        article.story_id = survivor.id
    session.flush()
    articles = store.articles_in_story(session=session, story_id=survivor.id)
    _elect_headline(survivor, _original_members(articles, state), limits)
    merge = _retire_empty_story(loser, survivor, session=session)
    _refresh_story(survivor, profile, session=session)
    return merge


def _refresh_story(story: Story, profile: StoryProfile, *, session: Session) -> None:
    """Counts, time span and keywords of a story whose articles changed."""
    assert story.id is not None
    session.flush()
    story.article_count = store.count_story_articles(session=session, story_id=story.id)
    story.source_count = store.distinct_sources_in_story(session=session, story_id=story.id)
    span = store.story_time_range(session=session, story_id=story.id)
    if span is not None:
        story.first_seen, story.last_seen = span
    story.keywords = story_keywords(profile)
