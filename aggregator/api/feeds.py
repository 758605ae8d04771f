"""The top stories as feeds: GET /stories.atom (Atom 1.0) and GET /stories.json (JSON Feed 1.1),
with the filters and sorts of GET /stories."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import lxml.etree as etree
from fastapi import APIRouter, Query, Request, Response

from aggregator.api.deps import SessionDep, etag_response
from aggregator.api.schemas import Problem
from aggregator.api.stories import FiltersDep, SortQuery, story_page
from aggregator.queries import StoryView

router = APIRouter(tags=["feeds"])
ATOM = "http://www.w3.org/2005/Atom"
FeedLimit = Annotated[int, Query(ge=1, le=100)]
FEED_MAX_AGE = 120


@router.get(
    "/stories.atom",
    response_class=Response,
    responses={
        200: {"content": {"application/atom+xml": {"schema": {"type": "string"}}}},
        422: {"model": Problem},
    },
)
def stories_atom(
    request: Request,
    session: SessionDep,
    filters: FiltersDep,
    sort: SortQuery = None,
    limit: FeedLimit = 30,
) -> Response:
    """The top stories as an Atom feed."""
    views = story_page(session, filters, sort, limit, None).items
    body = render_atom(views, base=_base(request), self_url=str(request.url))
    return etag_response(
        request, body, media_type="application/atom+xml; charset=utf-8", max_age=FEED_MAX_AGE
    )


@router.get(
    "/stories.json",
    response_class=Response,
    responses={
        200: {"content": {"application/feed+json": {"schema": {"type": "object"}}}},
        422: {"model": Problem},
    },
)
def stories_json_feed(
    request: Request,
    session: SessionDep,
    filters: FiltersDep,
    sort: SortQuery = None,
    limit: FeedLimit = 30,
) -> Response:
    """The top stories as a JSON Feed 1.1."""
    views = story_page(session, filters, sort, limit, None).items
    feed = render_json_feed(views, base=_base(request), self_url=str(request.url))
    body = json.dumps(feed, ensure_ascii=False).encode()
    return etag_response(
        request, body, media_type="application/feed+json; charset=utf-8", max_age=FEED_MAX_AGE
    )


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _external_url(view: StoryView) -> dict[str, str]:
    """The representative report's page, if it has one (a feed item may have no link)."""
    url = view.representative.url if view.representative else ""
    return {"external_url": url} if url else {}


def _content(view: StoryView) -> str:
    outlets = ", ".join(name for _, name in view.outlets)
    summary = view.representative.excerpt if view.representative else ""
    return f"{summary}\n\n{view.story.article_count} articles from {outlets}".strip()


def render_atom(views: list[StoryView], *, base: str, self_url: str) -> bytes:
    """An Atom 1.0 document of the stories (pure)."""
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM})  # type: ignore[dict-item]
    _text(feed, "title", "Top stories")
    _text(feed, "id", f"{base}/stories.atom")
    updated = max((v.story.last_seen for v in views), default=datetime(2000, 1, 1, tzinfo=UTC))
    _text(feed, "updated", updated.isoformat())
    etree.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=self_url)
    etree.SubElement(feed, f"{{{ATOM}}}link", rel="alternate", href=f"{base}/")
    for view in views:
        entry = etree.SubElement(feed, f"{{{ATOM}}}entry")
        _text(entry, "id", f"{base}/stories/{view.story.id}")
        _text(entry, "title", view.story.headline)
        _text(entry, "published", view.story.first_seen.isoformat())
        _text(entry, "updated", view.story.last_seen.isoformat())
        etree.SubElement(
            entry, f"{{{ATOM}}}link", rel="alternate", href=f"{base}/s/{view.story.id}"
        )
        author = etree.SubElement(entry, f"{{{ATOM}}}author")
        _text(author, "name", ", ".join(name for _, name in view.outlets) or "unknown")
        _text(entry, "summary", _content(view))
    return bytes(etree.tostring(feed, xml_declaration=True, encoding="utf-8"))


def _text(parent: etree._Element, tag: str, value: str) -> None:
    etree.SubElement(parent, f"{{{ATOM}}}{tag}").text = _xml_safe(value)


def _xml_safe(value: str) -> str:
    return "".join(c for c in value if c in "\t\n\r" or ord(c) >= 32)


def render_json_feed(views: list[StoryView], *, base: str, self_url: str) -> dict[str, Any]:
    """A JSON Feed 1.1 document of the stories (pure)."""
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Top stories",
        "home_page_url": f"{base}/",
        "feed_url": self_url,
        "items": [
            {
                "id": f"{base}/stories/{view.story.id}",
                "url": f"{base}/s/{view.story.id}",
                "title": view.story.headline,
                "content_text": _content(view),
                "date_published": view.story.first_seen.isoformat(),
                "date_modified": view.story.last_seen.isoformat(),
                "authors": [{"name": name} for _, name in view.outlets],
                "tags": list(view.story.keywords)[:8],
                **_external_url(view),
            }
            for view in views
        ],
    }
