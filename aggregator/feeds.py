"""Feed parsing: feedparser on bytes we fetched, into plain values."""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import feedparser
import lxml.html

from aggregator.storable import storable_text
from aggregator.urls import bounded_key, canonical_url


@dataclass(frozen=True)
class ParsedEntry:
    guid: str
    link: str
    title: str
    summary: str
    published: datetime | None
    author: str | None = None
    entry_hash: str = ""  # title + summary + link: an entry updated in place changes it


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    site_url: str
    entries: list[ParsedEntry] = field(default_factory=list)
    ttl_minutes: int | None = None
    problem: str | None = None  # why the feed is not well-formed, when it is not
    version: str = field(default="", compare=False, repr=False)  # "rss20", "atom10" …


ILLEGAL_XML_BYTES = bytes(b for b in range(32) if b not in (9, 10, 13))
# Character references such as &#0; or &#xD800; make the strict parser give up, and the loose
# one decodes them (or raises, for a surrogate or a number beyond Unicode). PostgreSQL refuses NUL
# in text and no driver encodes a surrogate: one such entry would fail the whole poll.
_CHARACTER_REFERENCE = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")


class FeedError(ValueError):
    """The body is not a feed at all."""


def parse_feed(body: bytes, *, url: str, headers: Mapping[str, str] | None = None) -> ParsedFeed:
    """Parse RSS/Atom bytes; malformed feeds still yield every entry feedparser could recover."""
    # No content-location: feedparser would resolve GUIDs against the feed URL, and a moved
    # feed would then see every entry as new. Links are resolved here instead.
    response_headers = {k.lower(): v for k, v in (headers or {}).items()}
    response_headers.pop("content-location", None)
    body = strip_illegal_xml_chars(body)
    response_headers = _utf8_when_declared_wrongly(body, response_headers)
    try:
        parsed = feedparser.parse(body, response_headers=response_headers, sanitize_html=True)
    except Exception as exc:  # its loose parser breaks in many ways (KeyError, ValueError …)
        raise FeedError(f"unreadable feed: {type(exc).__name__}: {exc}") from exc
    problem = _bozo_problem(parsed)
    entries = _with_identities(
        [entry for raw in parsed.entries if (entry := _parse_entry(raw, base_url=url))]
    )
    feed = parsed.feed
    result = ParsedFeed(
        title=_clean_text(feed.get("title", "")),
        site_url=storable_text(feed.get("link")),
        entries=entries,
        ttl_minutes=_as_int(feed.get("ttl")),
        problem=problem,
        version=str(parsed.get("version") or ""),
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
    link = _usable_link(storable_text(raw.get("link")).strip(), base_url=base_url)
    title = _clean_text(raw.get("title", ""))
    if not link and not title:
        return None
    summary = _clean_text(raw.get("summary", ""))
    return ParsedEntry(
        guid=storable_text(raw.get("id")).strip(),  # the feed's own GUID; see _with_identities
        link=link,
        title=title,
        summary=summary,
        published=_entry_time(raw),
        author=_clean_text(raw.get("author", "")) or None,
        entry_hash=entry_hash(title, summary, link),
    )


def _usable_link(link: str, *, base_url: str) -> str:
    """The link resolved against the feed URL; empty (no link) when it is no URL at all, such as
    one with a port out of range or a broken IPv6 address (canonical_url would raise on it)."""
    if not link:
        return ""
    try:
        resolved = urljoin(base_url, link)
        canonical_url(resolved)
    except ValueError:
        return ""
    return resolved


# A claimed publication date is not believed when it is later than the moment the item was seen
# (beyond clock skew: a scheduled post, a wrong time zone) or earlier than web publishing (a zero
# date such as the Unix epoch). Believed, it would keep a story first among the latest until
# that day, or have retention drop a new article at once.
CLOCK_SKEW = timedelta(minutes=15)
EARLIEST_PLAUSIBLE = datetime(1995, 1, 1, tzinfo=UTC)


def plausible_date(claimed: datetime | None, seen: datetime) -> datetime | None:
    """``claimed`` if an item seen at ``seen`` can have been published then, else None (so the
    next-best date applies: the page's own, then the discovery time)."""
    if claimed is None or not EARLIEST_PLAUSIBLE <= claimed <= seen + CLOCK_SKEW:
        return None
    return claimed


def entry_hash(title: str, summary: str, link: str) -> str:
    return hashlib.sha256(f"{title}\n{summary}\n{link}".encode()).hexdigest()


def identity_candidates(guid: str, link: str, published: datetime | None, title: str) -> list[str]:
    """An entry's possible identities, best first: GUID, canonical link, link plus date, title."""
    canonical = canonical_url(link) if link else ""
    stamp = published.isoformat() if published else ""
    return [
        bounded_key(guid.strip()),
        canonical,
        f"{canonical}@{stamp}" if canonical and stamp else "",
        title_identity(title, published),
    ]


def title_identity(title: str, published: datetime | None) -> str:
    """The identity of an entry known only by its title and date ("" without a title)."""
    if not title:
        return ""
    stamp = published.isoformat() if published else ""
    return "title:" + hashlib.sha256(f"{title}\n{stamp}".encode()).hexdigest()[:32]


def entry_identities(candidates: Sequence[Sequence[str]]) -> list[str]:
    """For each entry, its first candidate that is non-empty and unique within the document
    (a feed that repeats GUIDs falls back to links, and so on); the last non-empty otherwise."""
    counts = [Counter(keys[level] for keys in candidates) for level in range(len(candidates[0]))]
    identities = []
    for keys in candidates:
        present = [(level, key) for level, key in enumerate(keys) if key]
        unique = [key for level, key in present if counts[level][key] == 1]
        identities.append(unique[0] if unique else present[-1][1] if present else "")
    return identities


def _with_identities(entries: list[ParsedEntry]) -> list[ParsedEntry]:
    if not entries:
        return entries
    candidates = [identity_candidates(e.guid, e.link, e.published, e.title) for e in entries]
    identities = entry_identities(candidates)
    return [replace(entry, guid=key) for entry, key in zip(entries, identities, strict=True)]


def strip_illegal_xml_chars(body: bytes) -> bytes:
    """Drop C0 control bytes XML forbids (they make the strict parser give up on the feed), and
    references to characters XML forbids (see _CHARACTER_REFERENCE). Safe for UTF-8 and
    single-byte charsets; UTF-16/32 bodies are left alone."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in body[:4]:
        return body
    return _CHARACTER_REFERENCE.sub(_legal_reference, body.translate(None, ILLEGAL_XML_BYTES))


def _legal_reference(match: re.Match[bytes]) -> bytes:
    """The character reference if XML allows the character it names, else nothing."""
    hexadecimal, decimal = match.groups()
    digits = (hexadecimal or decimal).lstrip(b"0")
    if len(digits) > 7:  # beyond Unicode (and int() refuses some of these lengths)
        return b""
    code = int(digits or b"0", 16 if hexadecimal else 10)
    legal = code in (9, 10, 13) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0x10FFFF
    return match.group(0) if legal and code not in (0xFFFE, 0xFFFF) else b""


def _utf8_when_declared_wrongly(body: bytes, headers: dict[str, str]) -> dict[str, str]:
    """A body that is valid, non-ASCII UTF-8 but declared as another charset (header or XML
    declaration) is UTF-8: a legacy single-byte text almost never decodes as UTF-8."""
    if body.isascii():
        return headers
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return headers  # feedparser detects the real charset when the declared one fails
    media_type = headers.get("content-type", "").split(";")[0].strip() or "application/xml"
    return {**headers, "content-type": f"{media_type}; charset=utf-8"}


def _entry_time(raw: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = raw.get(key)
        if isinstance(value, time.struct_time):
            with contextlib.suppress(ValueError, OverflowError, OSError):  # outside the calendar
                return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    return None


def _clean_text(value: object) -> str:
    """Feed text is HTML-ish: keep the words, drop the markup, fold white space."""
    text = storable_text(value)
    if "<" in text or "&" in text:
        with contextlib.suppress(ValueError, lxml.etree.ParserError):
            text = lxml.html.fromstring(f"<div>{text}</div>").text_content()  # type: ignore[attr-defined]
    return " ".join(text.split())


def _as_int(value: object) -> int | None:
    try:
        return int(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None


COMMON_FEED_PATHS = ("/feed", "/rss", "/rss.xml", "/atom.xml", "/feed.xml", "/index.xml")
FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml"})


def feed_links(html: bytes, *, base_url: str) -> list[str]:
    """The feeds a page announces with <link rel="alternate" type="application/rss+xml|atom+xml">,
    then the common feed paths of its site."""
    links: list[str] = []
    with contextlib.suppress(ValueError, lxml.etree.ParserError):
        document = lxml.html.fromstring(html)
        for link in document.iter("link"):
            rel = (link.get("rel") or "").lower().split()
            kind = (link.get("type") or "").lower().split(";")[0].strip()
            href = (link.get("href") or "").strip()
            if "alternate" in rel and kind in FEED_TYPES and href:
                links.append(_usable_link(href, base_url=base_url))
    links += [urljoin(base_url, path) for path in COMMON_FEED_PATHS]
    return [link for link in dict.fromkeys(links) if link]


def is_feed(body: bytes, *, url: str, headers: Mapping[str, str] | None = None) -> bool:
    """Whether the body parses as RSS or Atom (not merely as some markup)."""
    try:
        parsed = parse_feed(body, url=url, headers=headers)
    except FeedError:
        return False
    return bool(parsed.entries) or parsed.version != ""
