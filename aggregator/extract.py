"""Article extraction: trafilatura on HTML we fetched, into plain values.

    html ─▶ parse once ─┬─▶ metadata: meta tags, JSON-LD, title, byline, date, top image
                        └─▶ fast precise text (trafilatura alone, no fallback extractors)
                               │ short, or covers little of the page's paragraph text?
                               ▼
                            precise text with readability/jusText fallbacks
                               │ still covers little?
                               ▼
                            balanced text, kept when clearly longer
                        ─▶ drop teaser lines ("Read more: …") and the leading title
                        ─▶ language: declared by the page, checked against the text

One function, `extract_article`, is what the workers and `aggregator extract` run.
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urljoin

import trafilatura
from htmldate import find_date
from lxml.etree import XPath
from lxml.html import HtmlElement
from trafilatura.json_metadata import normalize_authors
from trafilatura.metadata import examine_meta, extract_meta_json, extract_title
from trafilatura.settings import Document
from trafilatura.utils import load_html

from aggregator.storable import storable_text

MIN_WORDS = 25  # less than this is a teaser, a wall or an error page, not an article
# The precise extraction is retried in balanced mode when it is short and covers little of the
# text the page holds in paragraphs; the retry is kept when it is clearly longer. Thresholds as
# in trafilatura's own recall escalation (which its precision mode skips).
RETRY_MAX_CHARS = 3000
RETRY_PAGE_SHARE = 0.2
RETRY_ACCEPT_RATIO = 2.0
# The fast pass (no fallback extractors) is trusted unless its text is shorter than this, which is
# trafilatura's own MIN_EXTRACTED_SIZE: below it trafilatura itself calls in a fallback.
FAST_MIN_CHARS = 250
# Detection overrules the declared language only when it is this sure, on this much text.
LANGUAGE_OVERRULE_CONFIDENCE = 0.99
LANGUAGE_GUESS_CONFIDENCE = 0.5  # with nothing declared, a weaker guess is no language
LANGUAGE_SAMPLE_CHARS = 600
LANGUAGE_MIN_CHARS = 200

_PRECISE: dict[str, Any] = {"favor_precision": True, "include_comments": False}
_FAST_PRECISE: dict[str, Any] = {**_PRECISE, "fast": True}
_BALANCED: dict[str, Any] = {"include_comments": False}
# Dates from markup, structured data and the URL only: htmldate's search of the visible text
# turns a copyright line into "January 1st", and the feed usually has the date anyway.
_DATE_PARAMS: dict[str, Any] = {
    "original_date": True,
    "extensive_search": False,
    "outputformat": "%Y-%m-%dT%H:%M:%S%z",
}
_LANGUAGE_CODE = re.compile(r"^\s*([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]+)*\s*$")
_LANGUAGE_META = XPath(
    "//head/meta[translate(@http-equiv, 'CONTENTLAGU', 'contentlagu')='content-language'"
    " or translate(@name, 'LANGUE', 'langue')='language'"
    " or @property='og:locale' or @name='og:locale']/@content"
)
# A byline in the page body: rel/itemprop author, or a class or id naming the author or byline,
# outside comment sections. Plain XPath (no regular expressions) so it stays cheap.
_BYLINE = XPath(
    "//body//*[@rel='author' or @itemprop='author' or contains(@class, 'author')"
    " or contains(@class, 'byline') or contains(@id, 'author') or contains(@id, 'byline')]"
    "[not(ancestor-or-self::*[contains(@class, 'comment') or contains(@id, 'comment')])]"
    "[not(self::script or self::style or self::img or self::time)]"
)
_BYLINE_PREFIX = re.compile(r"^(?:by|von|par|por|di|door|av|af)\s+", re.I)
# Teaser and furniture lines that are never article text in any outlet: a link to another
# story ("Read more: …", "Related: …"), a section label ("Advertisement", "Comments"), a call to
# subscribe or share. Matched on short lines only, in English (the most common case).
_TEASER_LINE = re.compile(
    r"^\W*(?:advertisement|comments?|related(?: stories| articles| posts?| content)?|"
    r"read (?:more|next|also)|see (?:more|also)|also on \S+|also|more|don'?t miss|"
    r"you may also like|you might also like|recommended(?: for you)?|most (?:read|popular)\b.*|"
    r"share this(?: article| story)?|like this (?:story|article)\?.*|sign up\b.*|"
    r"subscribe\b.*|follow us\b.*)\s*(?::.*|\W*)$",
    re.I,
)
_TEASER_MAX_WORDS = 20
_WORD = re.compile(r"\w+")
# Scripts written without spaces between words: each character counts as half a word.
_UNSPACED = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]"
)


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
    tree = load_html(html)
    if tree is None:
        return None
    metadata = _metadata(tree, url=url)
    title = " ".join(storable_text(metadata.title).split())
    text = storable_text(_main_text(tree, url=url))
    text = _without_leading_title(_without_teaser_lines(text), title)
    if word_count(text) < MIN_WORDS:
        return None
    return Extracted(
        title=title,
        text=text,
        author=storable_text(metadata.author) or None,
        published=_parse_date(metadata.date),
        language=article_language(page_language(tree), text),
        image_url=_image_url(storable_text(metadata.image), base_url=url),
    )


def _image_url(image: str, *, base_url: str) -> str | None:
    """The image's URL resolved against the page's; None when it is no URL (urljoin raises on a
    broken IPv6 address)."""
    try:
        return urljoin(base_url, image) if image else None
    except ValueError:
        return None


# ---------------------------------------------------------------- text


def _main_text(tree: HtmlElement, *, url: str) -> str:
    page_chars = _paragraph_chars(tree)
    text = _extract_text(tree, url=url, options=_FAST_PRECISE)
    if len(text) >= FAST_MIN_CHARS and not covers_little(text, page_chars=page_chars):
        return text
    text = _extract_text(tree, url=url, options=_PRECISE)
    if not covers_little(text, page_chars=page_chars):
        return text
    retry = _extract_text(tree, url=url, options=_BALANCED)
    return retry if len(retry) > RETRY_ACCEPT_RATIO * len(text) else text


def covers_little(text: str, *, page_chars: int) -> bool:
    """Whether a short extraction holds little of the page's paragraph text, a sign that the
    precise extraction missed the article (and a balanced one is worth its time)."""
    return len(text) < RETRY_MAX_CHARS and len(text) < RETRY_PAGE_SHARE * page_chars


def _extract_text(tree: HtmlElement, *, url: str, options: dict[str, Any]) -> str:
    document = trafilatura.bare_extraction(tree, url=url, **options)
    return (document.text or "").strip() if isinstance(document, Document) else ""


def _paragraph_chars(tree: HtmlElement) -> int:
    """How much text the page holds in <p> elements: a cheap measure of its main text."""
    return sum(len(chunk.strip()) for p in tree.iter("p") for chunk in p.itertext())


def _without_teaser_lines(text: str) -> str:
    lines = text.split("\n")
    kept = [
        line
        for line in lines
        if len(line.split()) > _TEASER_MAX_WORDS or not _TEASER_LINE.match(line.strip())
    ]
    return "\n".join(kept) if len(kept) < len(lines) else text


def _without_leading_title(text: str, title: str) -> str:
    first, _, rest = text.partition("\n")
    return rest.strip() if title and first.strip() == title and rest.strip() else text


def word_count(text: str) -> int:
    """Words in the text, counting scripts without spaces (Chinese, Japanese, Thai…) at two
    characters a word."""
    unspaced = len(_UNSPACED.findall(text))
    spaced = _UNSPACED.sub(" ", text) if unspaced else text
    return len(_WORD.findall(spaced)) + unspaced // 2


# ---------------------------------------------------------------- metadata


def _metadata(tree: HtmlElement, *, url: str) -> Document:
    """Title, author, date and image, from the meta tags and JSON-LD first, then the page."""
    metadata = examine_meta(tree)
    if metadata.author and " " not in metadata.author:
        metadata.author = None  # a handle or a site name, not a person
    with suppress(Exception):  # trafilatura's JSON-LD reader can fail on odd markup
        metadata = extract_meta_json(tree, metadata)
    metadata.title = metadata.title or extract_title(tree)
    metadata.author = metadata.author or _byline(tree)
    metadata.date = find_date(tree, url=url, **_DATE_PARAMS)
    return metadata


def _byline(tree: HtmlElement) -> str | None:
    for element in _xpath_list(_BYLINE, tree):
        if not isinstance(element, HtmlElement):
            continue
        text = " ".join(" ".join(element.itertext()).split())
        text = _BYLINE_PREFIX.sub("", text)
        if 2 < len(text) < 80 and " " in text and not any(c.isdigit() for c in text):
            return normalize_authors(None, text)
    return None


def _xpath_list(expression: XPath, tree: HtmlElement) -> list[object]:
    result = expression(tree)
    return list(result) if isinstance(result, list) else []


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# ---------------------------------------------------------------- language


def page_language(tree: HtmlElement) -> str | None:
    """The language the page declares (<html lang>, content-language or og:locale meta), as a
    lower-case ISO 639 code."""
    root = tree.getroottree().getroot()
    for value in [root.get("lang"), root.get("xml:lang"), *_xpath_list(_LANGUAGE_META, tree)]:
        match = _LANGUAGE_CODE.match(value if isinstance(value, str) else "")
        if match:
            return match.group(1).lower()
    return None


def article_language(declared: str | None, text: str) -> str | None:
    """The declared language, unless the text is clearly in another one. With none declared, the
    detected one if the guess is confident, else None."""
    sample = text[:LANGUAGE_SAMPLE_CHARS].strip()
    if not sample or (declared and len(sample) < LANGUAGE_MIN_CHARS):
        return declared
    # Lower case: the identifier misreads text that mixes capitals and lower case (a transcript
    # in capitals with "Reporter:" cues came out as Nigerian Pidgin, confidence 0.03).
    detected, confidence = _language_identifier().classify(sample.lower())
    if declared is None:
        return str(detected) if confidence >= LANGUAGE_GUESS_CONFIDENCE else None
    if detected != declared and confidence >= LANGUAGE_OVERRULE_CONFIDENCE:
        return str(detected)
    return declared


def warm_up() -> None:
    """Load the language model now, e.g. in a worker's parent process before it forks."""
    _language_identifier()


@cache
def _language_identifier() -> Any:
    """py3langid's bundled model (loaded once, on first use: about a second)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
