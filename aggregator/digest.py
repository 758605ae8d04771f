"""The daily digest, pure: which stories a reader gets, their summaries, and the rendered mail.

    candidates (stories of the window) ─▶ select_stories(prefs, sent history) ─▶ summarise
                                                                              ─▶ render_digest

No I/O here: the stories, the reader's history, the time and the links come in as values.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, PackageLoader, StrictUndefined

from aggregator.ranking import hot_score

# A daily digest's stories are all new to its reader, from a window of a day or more: recency
# halves a story's score once a day there, not every 12 hours as in listings: at 12 hours a story
# from the morning needed twice the outlets of one from the evening to rank above it.
DIGEST_HALF_LIFE_HOURS = 24.0
SUMMARY_SENTENCES = 3
SUMMARY_MAX_CHARS = 480
LEAD_SENTENCES = 8  # sentences per article considered for the summary
SUBJECT_MAX_CHARS = 140


@dataclass(frozen=True)
class Outlet:
    source_id: int
    name: str
    url: str  # the outlet's article about the story; "" if it has none (or no safe one)


@dataclass(frozen=True)
class CandidateStory:
    """A story active in the digest's window, as the selection sees it."""

    id: int
    headline: str
    last_seen: datetime
    article_count: int
    outlet_count: int  # independent outlets (copies of another article count once)
    outlets: tuple[Outlet, ...]  # every outlet that carried it, with a link
    recent_articles: int = 0  # growth: articles in the ranking's growth window
    keywords: tuple[str, ...] = ()
    titles: tuple[str, ...] = ()  # its articles' titles (for the keyword filter)


@dataclass(frozen=True)
class Preferences:
    keywords: tuple[str, ...] = ()
    include_sources: frozenset[int] = frozenset()
    exclude_sources: frozenset[int] = frozenset()
    max_stories: int = 10


@dataclass(frozen=True)
class Selection:
    stories: list[CandidateStory]
    skip_reason: str | None = None  # set when nothing should be sent


@dataclass(frozen=True)
class DigestStory:
    id: int
    headline: str
    summary: str
    article_count: int
    outlets: tuple[Outlet, ...]
    url: str  # where the headline links: the first outlet's article


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class DigestPage:
    """Everything the templates show besides the stories."""

    day: date
    timezone: str
    unsubscribe_url: str
    site_url: str
    recipient: str
    window_hours: int = 24


# ---------------------------------------------------------------- time


def reader_zone(name: str) -> ZoneInfo:
    """The reader's time zone; ValueError for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {name!r}") from exc


def local_day(timezone: str, now: datetime) -> date:
    return now.astimezone(reader_zone(timezone)).date()


def due_day(timezone: str, send_hour: int, now: datetime) -> date | None:
    """The reader's local day if their send hour has come on it, else None. A send hour that a
    DST change skips (02:00 on the spring-forward day) is reached at the next hour."""
    local = now.astimezone(reader_zone(timezone))
    return local.date() if local.hour >= send_hour else None


def window_start(
    last_sent_at: datetime | None, *, now: datetime, window: timedelta, max_window: timedelta
) -> datetime:
    """Stories since the last digest (or of the last `window` without one), never older than
    `max_window`."""
    start = last_sent_at if last_sent_at is not None else now - window
    return max(start, now - max_window)


def message_id(subscriber_id: int, email: str, day: date, *, domain: str) -> str:
    """The digest's Message-ID: the same for every attempt at this reader's day."""
    digest = hashlib.sha256(f"{subscriber_id}:{email.lower()}:{day}".encode()).hexdigest()[:16]
    return f"<digest.{day:%Y%m%d}.{subscriber_id}.{digest}@{domain}>"


# ---------------------------------------------------------------- selection


def select_stories(
    candidates: Sequence[CandidateStory],
    *,
    prefs: Preferences,
    sent_outlets: Mapping[int, int],
    now: datetime,
    min_stories: int,
    min_new_outlets: int = 2,
) -> Selection:
    """The reader's stories, hottest first: filtered by their sources and keywords, without
    stories sent before unless they gained `min_new_outlets` outlets since. Fewer than
    `min_stories`: none, with the reason."""
    kept = []
    for story in candidates:
        visible = _visible(story, prefs)
        if visible is None or not _matches(visible, prefs.keywords):
            continue
        before = sent_outlets.get(story.id)
        if before is not None and story.outlet_count < before + min_new_outlets:
            continue
        kept.append(visible)
    kept.sort(key=lambda s: (-_score(s, now), -s.outlet_count, -s.id))
    chosen = kept[: max(prefs.max_stories, 0)]
    if len(chosen) < min_stories:
        noun = "story" if len(chosen) == 1 else "stories"
        reason = f"only {len(chosen)} {noun} qualified (minimum {min_stories})"
        return Selection([], reason)
    return Selection(chosen)


def _score(story: CandidateStory, now: datetime) -> float:
    return hot_score(
        outlets=story.outlet_count,
        articles=story.article_count,
        last_seen=story.last_seen,
        now=now,
        recent_articles=story.recent_articles,
        half_life_hours=DIGEST_HALF_LIFE_HOURS,
    )


def _visible(story: CandidateStory, prefs: Preferences) -> CandidateStory | None:
    """The story without the reader's excluded outlets; None when no outlet is left, or none
    of their chosen outlets carried it."""
    outlets = tuple(o for o in story.outlets if o.source_id not in prefs.exclude_sources)
    if not outlets:
        return None
    if prefs.include_sources and not any(o.source_id in prefs.include_sources for o in outlets):
        return None
    if len(outlets) == len(story.outlets):
        return story
    return replace(story, outlets=outlets)


def _matches(story: CandidateStory, keywords: Sequence[str]) -> bool:
    """Any keyword (a word or phrase, any case) in the headline, the story's keywords or one
    of its articles' titles. No keywords: every story."""
    if not keywords:
        return True
    haystack = " \n ".join((story.headline, *story.keywords, *story.titles))
    return any(_keyword_pattern(k).search(haystack) for k in keywords if k.strip())


@lru_cache(maxsize=4096)
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in keyword.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


# ---------------------------------------------------------------- summaries

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=[\"'“‘(]?[A-Z0-9])")
_QUOTE_START = re.compile(r"[\"'“‘«]")
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_ABBREVIATION = re.compile(r"(?:\b[A-Z]\.|\b(?:Mr|Mrs|Ms|Dr|St|Gen|Sen|Rep|Gov|Lt|Col|No)\.)$")


def plain_text(text: str) -> str:
    """Feed or page text as plain words: tags dropped, entities decoded, spaces collapsed."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def sentences(text: str) -> list[str]:
    """A text's sentences (a light splitter that keeps initials and titles together)."""
    parts: list[str] = []
    for piece in _SENTENCE_END.split(plain_text(text)):
        if parts and _ABBREVIATION.search(parts[-1]):
            parts[-1] = f"{parts[-1]} {piece}"
        elif piece:
            parts.append(piece)
    return parts


def summarise(
    texts: Sequence[str],
    *,
    max_sentences: int = SUMMARY_SENTENCES,
    max_chars: int = SUMMARY_MAX_CHARS,
) -> str:
    """Two or three sentences taken from the story's articles (the most representative first):
    lead sentences that share the most words with the other reports, in reading order."""
    candidates = [
        (rank, position, sentence)
        for rank, text in enumerate(texts)
        for position, sentence in enumerate(sentences(text)[:LEAD_SENTENCES])
        if 60 <= len(sentence) <= 400 and not _QUOTE_START.match(sentence)
    ]
    if not candidates:
        return _truncate(plain_text(texts[0]) if texts else "", max_chars)
    weights = _word_weights(texts)
    scored = sorted(candidates, key=lambda c: -_sentence_score(c[2], c[1], c[0], weights=weights))
    chosen: list[tuple[int, int, str]] = []
    for candidate in scored:
        if len(chosen) == max_sentences:
            break
        if any(_overlap(candidate[2], other[2]) > 0.5 for other in chosen):
            continue
        if sum(len(c[2]) + 1 for c in chosen) + len(candidate[2]) > max_chars and chosen:
            continue
        chosen.append(candidate)
    chosen.sort()
    return _truncate(" ".join(c[2] for c in chosen), max_chars)


def _word_weights(texts: Sequence[str]) -> dict[str, float]:
    """In how many of the reports each word appears (shared words mark the event)."""
    counts: dict[str, float] = {}
    for text in texts:
        for word in {w.lower() for w in _WORD.findall(text[:6000])}:
            counts[word] = counts.get(word, 0.0) + 1.0
    return counts


def _sentence_score(
    sentence: str, position: int, rank: int, *, weights: Mapping[str, float]
) -> float:
    words = {w.lower() for w in _WORD.findall(sentence)}
    if not words:
        return 0.0
    centrality = sum(weights.get(w, 0.0) for w in words) / math.sqrt(len(words))
    return centrality / (1.0 + 0.15 * position) / (1.0 + 0.25 * rank)


def _overlap(a: str, b: str) -> float:
    wa, wb = {w.lower() for w in _WORD.findall(a)}, {w.lower() for w in _WORD.findall(b)}
    return len(wa & wb) / max(1, min(len(wa), len(wb)))


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return f"{cut.rstrip(',;:')}…"


def digest_story(story: CandidateStory, texts: Sequence[str]) -> DigestStory:
    """A selected story with its summary, ready to render."""
    outlets = tuple(replace(o, url=o.url if safe_link(o.url) else "") for o in story.outlets)
    return DigestStory(
        id=story.id,
        headline=plain_text(story.headline),
        summary=summarise(texts),
        article_count=story.article_count,
        outlets=outlets,
        url=next((o.url for o in outlets if o.url), ""),
    )


def safe_link(url: str) -> bool:
    """Only http(s) links reach a mail (a feed may hand us javascript: or data: URLs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# ---------------------------------------------------------------- rendering


@lru_cache(maxsize=2)
def _environment(autoescape: bool) -> Environment:
    return Environment(
        loader=PackageLoader("aggregator", "templates/digest"),
        autoescape=autoescape,  # noqa: S701  (off only for the text/plain part)
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def long_date(day: date) -> str:
    return f"{day:%A}, {day.day} {day:%B %Y}"


def render_digest(stories: Sequence[DigestStory], page: DigestPage) -> RenderedDigest:
    """Subject, plain-text part and HTML part (autoescaped: feed text stays text)."""
    context = {"stories": stories, "page": page, "date": long_date(page.day)}
    text = _environment(False).get_template("digest.txt").render(context)
    body = _environment(True).get_template("digest.html").render(context)
    return RenderedDigest(digest_subject(stories, page.day), text, body)


def digest_subject(stories: Sequence[DigestStory], day: date) -> str:
    """One line: the date and the top headline (no line breaks can reach the header)."""
    subject = f"Your news digest for {day:%A} {day.day} {day:%B}"
    if stories:
        subject += f": {stories[0].headline}"
    return _truncate(_SPACE.sub(" ", subject).strip(), SUBJECT_MAX_CHARS)


def render_confirmation(*, confirm_url: str, recipient: str, hours: int) -> RenderedDigest:
    """The double opt-in mail of a sign-up."""
    context = {"confirm_url": confirm_url, "recipient": recipient, "hours": hours}
    text = _environment(False).get_template("confirm.txt").render(context)
    body = _environment(True).get_template("confirm.html").render(context)
    return RenderedDigest("Confirm your news digest subscription", text, body)
