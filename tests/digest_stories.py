"""Stories put straight into a store for the digest tests: a story row and one extracted
article per outlet."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from aggregator import store
from aggregator.models import Article, ExtractionStatus, Story

LEAD = (
    "The city council voted on Tuesday to close the old harbour bridge to all traffic after "
    "engineers found deep cracks in two of its piers. Repairs are expected to take a year and "
    "ferries will run every ten minutes in the meantime. Residents said the closure would "
    "lengthen their commute by half an hour."
)


def add_story(
    session: Session,
    headline: str,
    outlets: list[str],
    *,
    now: datetime,
    hours_ago: float = 2,
    text: str = LEAD,
) -> Story:
    when = now - timedelta(hours=hours_ago)
    story = Story(
        headline=headline,
        first_seen=when,
        last_seen=when,
        article_count=len(outlets),
        source_count=len(set(outlets)),
        language="en",
    )
    session.add(story)
    session.flush()
    for i, outlet in enumerate(outlets):
        add_article(
            session,
            story,
            outlet,
            title=headline if i == 0 else f"{headline} ({outlet})",
            when=when,
            text=text,
        )
    return story


def add_article(
    session: Session, story: Story, outlet: str, *, title: str, when: datetime, text: str = LEAD
) -> Article:
    source, _ = store.add_source(
        session=session, url=f"https://{outlet}.example/rss", title=outlet.title(), now=when
    )
    url = f"https://{outlet}.example/{story.id}/{abs(hash(title)) % 10**8}"
    article = Article(
        source_id=source.id or 0,
        guid=url,
        url=url,
        canonical_url=url,
        title=title,
        text=text,
        language="en",
        extraction_status=ExtractionStatus.EXTRACTED.value,
        published_at=when,
        discovered_at=when,
        story_id=story.id,
    )
    session.add(article)
    session.flush()
    return article


def grow_story(session: Session, story: Story, outlets: list[str], *, when: datetime) -> None:
    """New outlets report the story at `when`."""
    for outlet in outlets:
        add_article(session, story, outlet, title=f"{story.headline} ({outlet})", when=when)
    story.article_count += len(outlets)
    story.source_count += len(outlets)
    story.last_seen = max(story.last_seen, when)
