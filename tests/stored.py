"""Extracted articles put straight into a store, for tests of the stages after extraction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from aggregator import store
from aggregator.dedup import content_hash
from aggregator.models import Article, ExtractionStatus

NOW = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)


def add_extracted_article(
    session: Session, source: str, title: str, text: str, *, hours: int = 0
) -> Article:
    """An English article of `source` (created if new), extracted, published `hours` after NOW."""
    src, _ = store.add_source(
        session=session, url=f"https://{source}.example/rss", title=source, now=NOW
    )
    url = f"https://{source}.example/{abs(hash(title))}"
    article = Article(
        source_id=src.id or 0,
        guid=f"{source}:{title}",
        url=url,
        canonical_url=url,
        title=title,
        text=text,
        language="en",
        extraction_status=ExtractionStatus.EXTRACTED.value,
        content_hash=content_hash(title, text),
        published_at=NOW + timedelta(hours=hours),
        discovered_at=NOW + timedelta(hours=hours),
    )
    session.add(article)
    session.flush()
    return article
