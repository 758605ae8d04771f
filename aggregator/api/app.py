"""The HTTP API: thin routes over store queries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel
from sqlmodel import Session

from aggregator import store
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.models import Story
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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.effective_database_url)
    upgrade_database(engine)
    app = FastAPI(title="news-aggregator", version="0.1.0")
    app.state.engine = engine

    def session_dependency() -> Iterator[Session]:
        with session_scope(engine) as session:
            yield session

    SessionDep = Annotated[Session, Depends(session_dependency)]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stories", response_model=list[StoryOut])
    def list_stories(
        session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
    ) -> list[StoryOut]:
        return [_story_out(s) for s in store.latest_stories(session=session, limit=limit)]

    @app.get("/stories/{story_id}", response_model=StoryDetailOut)
    def get_story(story_id: int, session: SessionDep) -> StoryDetailOut:
        story = session.get(Story, story_id)
        if story is None:
            raise HTTPException(status_code=404, detail="no such story")
        rows = store.story_articles(session=session, story_id=story_id)
        articles = [
            ArticleOut(
                id=a.id or 0,
                title=a.title,
                url=a.url,
                outlet=s.title or s.url,
                published_at=a.published_at,
                extraction_status=a.extraction_status,
                duplicate_of_id=a.duplicate_of_id,
            )
            for a, s in rows
        ]
        return StoryDetailOut(**_story_out(story).model_dump(), articles=articles)

    return app


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
