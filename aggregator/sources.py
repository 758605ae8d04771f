"""Source lists: read TOML or OPML, write OPML. Pure: bytes in, values out."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from urllib.parse import urlsplit

import lxml.etree as etree

from aggregator.urls import MAX_KEY_BYTES, fits_key


@dataclass(frozen=True)
class SourceEntry:
    url: str
    title: str = ""


class SourceListError(ValueError):
    """The file is neither a valid TOML source list nor a valid OPML document."""


def parse_source_list(data: bytes, *, filename: str) -> list[SourceEntry]:
    """Feeds listed in a TOML file (`[[source]]` tables with `url`, `title`) or an OPML file."""
    if filename.lower().endswith(".toml"):
        return _parse_toml(data)
    return _parse_opml(data)


def _parse_toml(data: bytes) -> list[SourceEntry]:
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SourceListError(f"invalid TOML: {exc}") from exc
    tables = document.get("source", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise SourceListError("expected [[source]] tables")
    entries = [_entry(str(t.get("url", "")), str(t.get("title", ""))) for t in tables]
    return _unique(entries)


def _parse_opml(data: bytes) -> list[SourceEntry]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise SourceListError(f"invalid OPML: {exc}") from exc
    if root.tag != "opml":
        raise SourceListError(f"invalid OPML: root element is <{root.tag}>")
    outlines = root.iter("outline")
    entries = [_entry(o.get("xmlUrl", ""), _outline_title(o)) for o in outlines if o.get("xmlUrl")]
    return _unique(entries)


def _outline_title(outline: etree._Element) -> str:
    title = outline.get("title") or outline.get("text") or ""
    return "" if title == outline.get("xmlUrl") else title


def _entry(url: str, title: str) -> SourceEntry:
    """As POST /sources takes them: an http(s) URL without control characters, short enough for
    sources.url's unique index (PostgreSQL's), and no NUL (which PostgreSQL refuses)."""
    url = url.strip()
    if "\x00" in title:
        raise SourceListError(f"NUL character in the title of {url!r}")
    if not is_feed_url(url):
        raise SourceListError(f"not an http(s) feed URL: {url[:200]!r}")
    if not fits_key(url):
        raise SourceListError(f"feed URL over {MAX_KEY_BYTES} bytes: {url[:200]!r}…")
    return SourceEntry(url, title.strip())


def is_feed_url(url: str) -> bool:
    """An http(s) URL with a host and no control characters (what a feed URL must be)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # a broken IPv6 address
        return False
    clean = not any(ord(c) < 32 for c in url)
    return clean and parts.scheme in ("http", "https") and bool(parts.hostname)


def _unique(entries: list[SourceEntry]) -> list[SourceEntry]:
    seen: dict[str, SourceEntry] = {}
    for entry in entries:
        seen.setdefault(entry.url, entry)
    return list(seen.values())


def render_opml(entries: list[SourceEntry], *, title: str = "news-aggregator sources") -> bytes:
    """An OPML 2.0 subscription list."""
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    body = etree.SubElement(root, "body")
    for entry in entries:
        outline = etree.SubElement(body, "outline", type="rss", text=entry.title or entry.url)
        outline.set("xmlUrl", entry.url)
        if entry.title:
            outline.set("title", entry.title)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
