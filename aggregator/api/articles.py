"""GET /articles and GET /articles/{id}: excerpts for everyone, full text with an API key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from aggregator import queries
from aggregator.api.deps import MAX_ID, HasKeyDep, SessionDep, etag_response, utc_param
from aggregator.api.schemas import ArticleDetailOut, ArticlePage, Problem
from aggregator.api.shape import article_detail_out, article_page_out
from aggregator.api.stories import CursorQuery, LimitQuery
from aggregator.models import ExtractionStatus

router = APIRouter(tags=["articles"])


@router.get("/articles", response_model=ArticlePage, responses={422: {"model": Problem}})
def list_articles(
    request: Request,
    session: SessionDep,
    story: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    source: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    q: Annotated[str | None, Query(max_length=500, description="Full text.")] = None,
    since: Annotated[datetime | None, Query(description="Published at or after.")] = None,
    until: Annotated[datetime | None, Query(description="Published at or before.")] = None,
    status: Annotated[ExtractionStatus | None, Query(description="Extraction status.")] = None,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
) -> Response:
    """Articles newest first, or by relevance then recency with `q`."""
    filters = queries.ArticleFilters(
        story=story,
        source=source,
        q=q.strip() or None if q else None,
        since=utc_param("since", since),
        until=utc_param("until", until),
        status=status.value if status else None,
    )
    try:
        page = queries.list_articles(session=session, filters=filters, limit=limit, cursor=cursor)
    except queries.CursorError as exc:
        raise HTTPException(422, f"cursor: {exc}") from exc
    body = article_page_out(page.items, page.next_cursor).model_dump_json().encode()
    return etag_response(request, body, media_type="application/json")


@router.get(
    "/articles/{article_id}", response_model=ArticleDetailOut, responses={404: {"model": Problem}}
)
def get_article(
    request: Request,
    session: SessionDep,
    has_key: HasKeyDep,
    article_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Response:
    """One article with its extraction status; `text` only for requests with an API key."""
    found = queries.article_full(session=session, article_id=article_id)
    if found is None:
        raise HTTPException(404, "no such article")
    body = article_detail_out(*found, full_text=has_key).model_dump_json().encode()
    response = etag_response(request, body, media_type="application/json")
    response.headers["Vary"] = "X-API-Key, Authorization"
    if has_key:
        response.headers["Cache-Control"] = "private, max-age=30"
    return response
