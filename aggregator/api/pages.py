"""Pages for people: GET / (top stories, a search box) and GET /s/{id} (one story by outlet).
Rendered server-side with Jinja2 (autoescaped); no JavaScript."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from aggregator import queries, store
from aggregator.api.deps import MAX_ID, SessionDep, etag_response
from aggregator.api.stories import scoring_time
from aggregator.queries import ArticleBrief, StoryFilters

router = APIRouter(
    tags=["pages"],
    responses={
        422: {
            "description": "Invalid input.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    },
)
templates = Environment(
    loader=FileSystemLoader(FilePath(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
templates.filters["safe_url"] = lambda url: (
    url if str(url).startswith(("http://", "https://")) else "#"
)
PAGE_SIZE = 30


def age(moment: datetime, now: datetime) -> str:
    """A short age: "just now", "5 min ago", "3 h ago", "2 days ago"."""
    minutes = int((now - moment).total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} h ago"
    return f"{minutes // (24 * 60)} days ago"


def _html(request: Request, name: str, **context: object) -> Response:
    body = templates.get_template(name).render(**context).encode()
    return etag_response(request, body, media_type="text/html; charset=utf-8", max_age=30)


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=500)] = None,
    cursor: Annotated[str | None, Query(max_length=400, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> Response:
    """The top stories, or the stories matching a search."""
    q = q.strip() if q else None
    sort = "relevance" if q else "hot"
    now = scoring_time()
    try:
        page = queries.list_stories(
            session=session,
            filters=StoryFilters(q=q or None),
            sort=sort,
            limit=PAGE_SIZE,
            cursor=cursor,
            now=now,
        )
    except queries.CursorError as exc:
        raise HTTPException(422, f"cursor: {exc}") from exc
    return _html(request, "index.html", page=page, q=q or "", now=now, age=age)


@router.get(
    "/s/{story_id}",
    response_class=HTMLResponse,
    responses={
        308: {"description": "The story was merged into the one named by Location."},
        404: {
            "description": "No such story.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    },
)
def story_page(
    request: Request, session: SessionDep, story_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> Response:
    """One story, its articles grouped by outlet."""
    story = store.story_survivor(session=session, story_id=story_id)
    if story is None:
        raise HTTPException(404, "no such story")
    if story.id != story_id:
        return RedirectResponse(f"/s/{story.id}", status_code=308)
    (view,) = queries.stories_with_articles(session=session, story_ids=[story_id])
    return _html(
        request,
        "story.html",
        view=view,
        by_outlet=by_outlet(view.articles),
        now=datetime.now(UTC),
        age=age,
    )


def by_outlet(articles: list[ArticleBrief]) -> list[tuple[str, list[ArticleBrief]]]:
    """Articles grouped by outlet, outlets in the order they first reported."""
    groups: dict[str, list[ArticleBrief]] = defaultdict(list)
    for article in articles:
        groups[article.outlet].append(article)
    return list(groups.items())
