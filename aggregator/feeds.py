"""Feed parsing: feedparser on bytes we fetched, into plain values."""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser
import lxml.html

from aggregator.urls import canonical_url


@dataclass(frozen=True)
class ParsedEntry:
    guid: str
    link: str
    title: str
    summary: str
    published: datetime | None
    author: str | None = None


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    site_url: str
    entries: list[ParsedEntry] = field(default_factory=list)
    ttl_minutes: int | None = None
    problem: str | None = None  # why the feed is not well-formed, when it is not


class FeedError(ValueError):
    """The body is not a feed at all."""


def parse_feed(body: bytes, *, url: str, headers: Mapping[str, str] | None = None) -> ParsedFeed:
    """Parse RSS/Atom bytes; malformed feeds still yield every entry feedparser could recover."""
    # No content-location: feedparser would resolve GUIDs against the feed URL, and a moved
    # feed would then see every entry as new. Links are resolved here instead.
    response_headers = {k.lower(): v for k, v in (headers or {}).items()}
    response_headers.pop("content-location", None)
    parsed = feedparser.parse(body, response_headers=response_headers, sanitize_html=True)
    problem = _bozo_problem(parsed)
    entries = [entry for raw in parsed.entries if (entry := _parse_entry(raw, base_url=url))]
    feed = parsed.feed
    result = ParsedFeed(
        title=_clean_text(feed.get("title", "")),
        site_url=str(feed.get("link", "")),
        entries=entries,
        ttl_minutes=_as_int(feed.get("ttl")),
        problem=problem,
    )
    if not (parsed.get("version") or result.entries or result.title):
        raise FeedError(f"not a feed: {problem or 'empty document'}")
    return result


def _bozo_problem(parsed: Any) -> str | None:
    exc = parsed.get("bozo_exception")
    if not parsed.get("bozo") or isinstance(exc, feedparser.NonXMLContentType):
        return None  # a feed served as text/html or without a type is still a good feed
    return f"{type(exc).__name__}: {exc}" if exc else "malformed feed"


def _parse_entry(raw: Any, *, base_url: str) -> ParsedEntry | None:
    link = str(raw.get("link") or "").strip()
    link = urljoin(base_url, link) if link else ""
    title = _clean_text(raw.get("title", ""))
    if not link and not title:
        return None
    published = _entry_time(raw)
    return ParsedEntry(
        guid=entry_identity(str(raw.get("id") or ""), link, published, title),
        link=link,
        title=title,
        summary=_clean_text(raw.get("summary", "")),
        published=published,
        author=_clean_text(raw.get("author", "")) or None,
    )


def entry_identity(guid: str, link: str, published: datetime | None, title: str) -> str:
    """GUID first; otherwise the canonical link; otherwise a hash of the title and date."""
    if guid.strip():
        return guid.strip()
    if link:
        return canonical_url(link)
    stamp = published.isoformat() if published else ""
    return "title:" + hashlib.sha256(f"{title}\n{stamp}".encode()).hexdigest()[:32]


def _entry_time(raw: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = raw.get(key)
        if isinstance(value, time.struct_time):
            return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    return None


def _clean_text(value: object) -> str:
    """Feed text is HTML-ish: keep the words, drop the markup, fold white space."""
    text = str(value or "")
    if "<" in text or "&" in text:
        with contextlib.suppress(ValueError, lxml.etree.ParserError):
            text = lxml.html.fromstring(f"<div>{text}</div>").text_content()  # type: ignore[attr-defined]
    return " ".join(text.split())


def _as_int(value: object) -> int | None:
    try:
        return int(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None
