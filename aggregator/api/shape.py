"""Turn query results into response bodies."""

from __future__ import annotations

from typing import Any

from aggregator.api.schemas import (
    ArticleDetailOut,
    ArticleInStoryOut,
    ArticleOut,
    ArticlePage,
    SourceOut,
    StoryDetailOut,
    StoryOut,
    StoryPage,
)
from aggregator.models import Article, Source
from aggregator.queries import ArticleBrief, SourceView, StoryView, excerpt

KEYWORDS_SHOWN = 8


def article_out(brief: ArticleBrief) -> ArticleOut:
    return ArticleOut(**vars(brief))


def article_page_out(briefs: list[ArticleBrief], next_cursor: str | None) -> ArticlePage:
    """A page of articles, validated in one pass (cheaper than a model built per article)."""
    return ArticlePage.model_validate(
        {"items": [vars(brief) for brief in briefs], "next_cursor": next_cursor}
    )


def story_page_out(views: list[StoryView], next_cursor: str | None) -> StoryPage:
    """A page of stories, validated in one pass (cheaper than a model built per story, outlet
    and article)."""
    return StoryPage.model_validate(
        {"items": [_story_fields(view) for view in views], "next_cursor": next_cursor}
    )


def story_out(view: StoryView) -> StoryOut:
    return StoryOut.model_validate(_story_fields(view))


def _story_fields(view: StoryView) -> dict[str, Any]:
    story = view.story
    representative = view.representative
    return {
        "id": story.id or 0,
        "url": f"/stories/{story.id}",
        "headline": story.headline,
        "summary": representative.excerpt if representative else "",
        "article_count": story.article_count,
        "source_count": story.source_count,
        "outlets": [{"id": sid, "name": name} for sid, name in view.outlets],
        "first_seen": story.first_seen,
        "last_seen": story.last_seen,
        "language": story.language,
        "keywords": list(story.keywords)[:KEYWORDS_SHOWN],
        "hot": view.hot,
        "representative": vars(representative) if representative else None,
    }


def story_detail_out(view: StoryView) -> StoryDetailOut:
    first = view.first_report
    return StoryDetailOut(
        **story_out(view).model_dump(exclude={"representative"}),
        representative=article_out(view.representative) if view.representative else None,
        first_report=article_out(first) if first else None,
        articles=fold_duplicates(view.articles),
    )


def fold_duplicates(articles: list[ArticleBrief]) -> list[ArticleInStoryOut]:
    """Originals in order, each with the duplicates of it that the list holds."""
    top = {a.id: ArticleInStoryOut(**vars(a)) for a in articles if not _folded(a, articles)}
    for article in articles:
        if _folded(article, articles):
            top[article.duplicate_of_id or 0].duplicates.append(article_out(article))
    return list(top.values())


def _folded(article: ArticleBrief, articles: list[ArticleBrief]) -> bool:
    return article.duplicate_of_id is not None and any(
        a.id == article.duplicate_of_id and a.duplicate_of_id is None for a in articles
    )


def article_detail_out(article: Article, source: Source, *, full_text: bool) -> ArticleDetailOut:
    return ArticleDetailOut(
        id=article.id or 0,
        story_id=article.story_id,
        source_id=article.source_id,
        outlet=source.title or source.url,
        title=article.title,
        url=article.url,
        published_at=article.published_at,
        excerpt=excerpt(article.summary or article.text),
        extraction_status=article.extraction_status,
        duplicate_of_id=article.duplicate_of_id,
        canonical_url=article.canonical_url,
        author=article.author,
        language=article.language,
        image_url=article.image_url,
        discovered_at=article.discovered_at,
        fetched_at=article.fetched_at,
        text=article.text if full_text else None,
    )


def source_out(view: SourceView) -> SourceOut:
    source = view.source
    return SourceOut(
        **source.model_dump(
            include={
                "url",
                "title",
                "site_url",
                "health",
                "created_at",
                "next_poll_at",
                "last_polled_at",
                "last_success_at",
                "last_error",
                "last_error_at",
                "consecutive_errors",
                "poll_interval_seconds",
            }
        ),
        id=source.id or 0,
        article_count=view.article_count,
        last_article_at=view.last_article_at,
    )
