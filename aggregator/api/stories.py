"""GET /stories and GET /stories/{id}."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from aggregator import queries, store
from aggregator.api.deps import MAX_ID, SessionDep, etag_response, utc_param
from aggregator.api.schemas import Problem, StoryDetailOut, StoryPage
from aggregator.api.shape import story_detail_out, story_page_out

router = APIRouter(tags=["stories"])
Sort = Literal["hot", "recent", "size", "relevance"]
WORD = r"^[\w\-. ]+$"


async def story_filters(
    since: Annotated[datetime | None, Query(description="Last article at or after.")] = None,
    until: Annotated[datetime | None, Query(description="First article at or before.")] = None,
    q: Annotated[
        str | None, Query(max_length=500, description="Full text: every word must match.")
    ] = None,
    source: Annotated[int | None, Query(ge=1, le=MAX_ID, description="A source id.")] = None,
    language: Annotated[str | None, Query(max_length=16, pattern=WORD)] = None,
    min_sources: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    topic: Annotated[
        str | None, Query(max_length=64, pattern=WORD, description="One of the keywords.")
    ] = None,
) -> queries.StoryFilters:
    return queries.StoryFilters(
        since=utc_param("since", since),
        until=utc_param("until", until),
        q=q.strip() or None if q else None,
        source=source,
        language=language,
        min_sources=min_sources,
        topic=topic,
    )


FiltersDep = Annotated[queries.StoryFilters, Depends(story_filters)]
SortQuery = Annotated[
    Sort | None,
    Query(description="hot (default), recent, size; relevance (default with q) needs q."),
]
LimitQuery = Annotated[int, Query(ge=1, le=100)]
CursorQuery = Annotated[
    str | None, Query(max_length=400, pattern=r"^[A-Za-z0-9_-]+$", description="Opaque.")
]


def scoring_time() -> datetime:
    """Now, to the minute: hot listings (and their ETags) hold still for a minute."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def effective_sort(sort: Sort | None, filters: queries.StoryFilters) -> str:
    if sort == "relevance" and not filters.q:
        raise HTTPException(422, "sort=relevance needs q")
    return sort or ("relevance" if filters.q else "hot")


def story_page(
    session: SessionDep,
    filters: queries.StoryFilters,
    sort: Sort | None,
    limit: int,
    cursor: str | None,
) -> queries.Page[queries.StoryView]:
    try:
        return queries.list_stories(
            session=session,
            filters=filters,
            sort=effective_sort(sort, filters),
            limit=limit,
            cursor=cursor,
            now=scoring_time(),
        )
    except queries.CursorError as exc:
        raise HTTPException(422, f"cursor: {exc}") from exc


@router.get("/stories", response_model=StoryPage, responses={422: {"model": Problem}})
def list_stories(
    request: Request,
    session: SessionDep,
    filters: FiltersDep,
    sort: SortQuery = None,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
) -> Response:
    """Stories (merged ones never), filtered, sorted, one page at a time."""
    page = story_page(session, filters, sort, limit, cursor)
    body = story_page_out(page.items, page.next_cursor).model_dump_json().encode()
    return etag_response(request, body, media_type="application/json")


@router.get(
    "/stories/{story_id}",
    response_model=StoryDetailOut,
    responses={
        308: {"description": "The story was merged into the one named by Location."},
        404: {"model": Problem},
    },
)
def get_story(
    request: Request, session: SessionDep, story_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> Response:
    """A story with its articles in time order, duplicates folded under their originals."""
    story = store.story_survivor(session=session, story_id=story_id)
    if story is None:
        raise HTTPException(status_code=404, detail="no such story")
    if story.id != story_id:  # merged: its id keeps answering, with the survivor's address
        return RedirectResponse(f"/stories/{story.id}", status_code=308)
    (view,) = queries.stories_with_articles(session=session, story_ids=[story_id])
    body = story_detail_out(view).model_dump_json().encode()
    return etag_response(request, body, media_type="application/json")
