"""Article extraction: trafilatura on HTML text we fetched, into plain values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import trafilatura
from trafilatura.settings import Document

MIN_WORDS = 25  # less than this is a teaser, a wall or an error page, not an article
_HTML_LANG = re.compile(
    rb"<html\b[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]+)?", re.I
)
_DATE_PARAMS = {"original_date": True, "outputformat": "%Y-%m-%dT%H:%M:%S%z"}


@dataclass(frozen=True)
class Extracted:
    title: str
    text: str
    author: str | None
    published: datetime | None
    language: str | None
    image_url: str | None


def extract_article(html: bytes | str, *, url: str) -> Extracted | None:
    """The article's clean text and metadata, or None when the page holds no article."""
    document = trafilatura.bare_extraction(
        html,
        url=url,
        include_comments=False,
        favor_precision=True,
        with_metadata=True,
        date_extraction_params=_DATE_PARAMS,
    )
    if not isinstance(document, Document):
        return None
    text = (document.text or "").strip()
    if len(text.split()) < MIN_WORDS:
        return None
    title = " ".join((document.title or "").split())
    return Extracted(
        title=title,
        text=_without_leading_title(text, title),
        author=document.author or None,
        published=_parse_date(document.date),
        language=page_language(html),
        image_url=document.image or None,
    )


def _without_leading_title(text: str, title: str) -> str:
    first, _, rest = text.partition("\n")
    return rest.strip() if title and first.strip() == title and rest.strip() else text


def page_language(html: bytes | str) -> str | None:
    """The language the page declares on its <html> element, as a lower-case code."""
    head = (html.encode("utf-8", "replace") if isinstance(html, str) else html)[:4096]
    match = _HTML_LANG.search(head)
    return match.group(1).decode("ascii").lower() if match else None


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
