"""The HTTP API: thin routes over store queries."""

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from sqlmodel import Session

from aggregator import store
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.models import Article, Source, Story
from aggregator.settings import Settings, get_settings


class ArticleOut(BaseModel):
    id: int
    title: str
    url: str
    outlet: str
    published_at: datetime | None
    extraction_status: str
    duplicate_of_id: int | None


class StoryOut(BaseModel):
    id: int
    headline: str
    article_count: int
    source_count: int
    first_seen: datetime
    last_seen: datetime
    language: str | None


class StoryDetailOut(StoryOut):
    articles: list[ArticleOut]


def get_session(request: Request) -> Iterator[Session]:
    """One unit of work per request, on the app's engine."""
    with session_scope(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/stories", response_model=list[StoryOut])
def list_stories(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[StoryOut]:
    return [_story_out(s) for s in store.latest_stories(session=session, limit=limit)]


@router.get(
    "/stories/{story_id}",
    response_model=StoryDetailOut,
    responses={308: {"description": "The story was merged into the one named by Location."}},
)
def get_story(story_id: int, session: SessionDep) -> StoryDetailOut | RedirectResponse:
    story = store.story_survivor(session=session, story_id=story_id)
    if story is None:
        raise HTTPException(status_code=404, detail="no such story")
    if story.id != story_id:  # merged: its id keeps answering, with the survivor's address
        return RedirectResponse(f"/stories/{story.id}", status_code=308)
    rows = store.story_articles(session=session, story_id=story_id)
    articles = [_article_out(article, source) for article, source in rows]
    return StoryDetailOut(**_story_out(story).model_dump(), articles=articles)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app on the configured store, migrated to the current schema."""
    settings = settings or get_settings()
    engine = make_engine(settings.effective_database_url)
    upgrade_database(engine)
    app = FastAPI(title="news-aggregator", version="0.1.0")
    app.state.engine = engine
    app.include_router(router)
    return app


def _article_out(article: Article, source: Source) -> ArticleOut:
    return ArticleOut(
        id=article.id or 0,
        title=article.title,
        url=article.url,
        outlet=source.title or source.url,
        published_at=article.published_at,
        extraction_status=article.extraction_status,
        duplicate_of_id=article.duplicate_of_id,
    )


def _story_out(story: Story) -> StoryOut:
    return StoryOut(
        id=story.id or 0,
        headline=story.headline,
        article_count=story.article_count,
        source_count=story.source_count,
        first_seen=story.first_seen,
        last_seen=story.last_seen,
        language=story.language,
    )
