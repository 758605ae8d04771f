"""Response and request bodies of the API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

NO_NUL = r"^[^\x00]*$"


class OutletOut(BaseModel):
    id: int
    name: str


class ArticleOut(BaseModel):
    id: int
    story_id: int | None
    source_id: int
    outlet: str
    title: str
    url: str = Field(
        description="The outlet's page. Empty when the feed item had no link: RSS allows items"
        " that are only a text, and the article's text is then the feed's."
    )
    published_at: datetime | None
    excerpt: str
    extraction_status: str
    duplicate_of_id: int | None


class ArticleInStoryOut(ArticleOut):
    duplicates: list[ArticleOut] = Field(
        default_factory=list, description="Copies of this article by other outlets or feeds."
    )


class ArticleDetailOut(ArticleOut):
    canonical_url: str = Field(
        description="The key that makes the article unique: its URL without tracking parameters"
        " or fragment; for a feed item without a link, `entry:<source id>:<hash of its id>`."
    )
    author: str | None
    language: str | None
    image_url: str | None
    discovered_at: datetime
    fetched_at: datetime | None
    text: str | None = Field(description="The full text; only for requests with an API key.")


class ArticlePage(BaseModel):
    items: list[ArticleOut]
    next_cursor: str | None


class StoryOut(BaseModel):
    id: int
    url: str = Field(description="The story's address in this API.")
    headline: str
    summary: str
    article_count: int
    source_count: int = Field(description="Distinct outlets (wire copies count once).")
    outlets: list[OutletOut]
    first_seen: datetime
    last_seen: datetime
    language: str | None
    keywords: list[str]
    hot: float | None = Field(None, description="The hot score (sort=hot only).")
    representative: ArticleOut | None


class StoryPage(BaseModel):
    items: list[StoryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


class StoryDetailOut(StoryOut):
    first_report: ArticleOut | None = Field(description="The earliest original article.")
    articles: list[ArticleInStoryOut] = Field(
        description="Originals in time order, each with its duplicates folded under it."
    )


class SourceOut(BaseModel):
    id: int
    url: str
    title: str
    site_url: str
    health: str
    created_at: datetime
    next_poll_at: datetime
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    consecutive_errors: int
    poll_interval_seconds: int | None
    article_count: int
    last_article_at: datetime | None


class SourcePage(BaseModel):
    items: list[SourceOut]
    next_cursor: str | None


class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="The feed's http(s) URL.")
    title: str = Field("", max_length=300, pattern=NO_NUL)


class SourcePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2000)
    title: str | None = Field(None, max_length=300, pattern=NO_NUL)
    poll_now: bool = Field(False, description="Make the source due for a poll now.")


class SourceRemoved(BaseModel):
    id: int
    deleted: bool = Field(description="True: gone; false: retired (it has articles, kept).")


class ImportResult(BaseModel):
    added: int
    existing: int
    sources: list[SourceOut]


class Problem(BaseModel):
    detail: str
