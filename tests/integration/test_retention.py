"""Retention: expired articles and quiet stories are purged in batches and leave tombstones that
keep feeds from bringing them back. Real pipeline, real HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from aggregator import pipeline, retention, store
from aggregator.db import session_scope
from aggregator.fetch import Fetcher
from aggregator.models import Article, Story, StoryIndexEntry, Tombstone
from aggregator.settings import Settings
from tests.conftest import FixtureSite, Invoke
from tests.stored import NOW, add_extracted_article

LATER = NOW + timedelta(days=120)  # the retention period (90 days) has passed for NOW's articles
QUAKE = (
    "A strong earthquake struck the coastal city of Valmora on Tuesday, collapsing two bridges "
    "and cutting power to thousands of homes while rescue teams searched the harbour district."
)
VOTE = (
    "The parliament of Estoria approved the disputed pension reform by a narrow margin on "
    "Wednesday after a night of debate, and the opposition promised to challenge the law in court."
)


def _clustered(
    session: Session, settings: Settings, source: str, title: str, text: str, hours: int
) -> Article:
    article = add_extracted_article(session, source, title, text, hours=hours)
    pipeline.cluster_article(article.id or 0, session=session, settings=settings, now=NOW)
    return article


def _count(session: Session, model: type) -> int:
    return int(session.exec(select(func.count()).select_from(model)).one())


def test_old_articles_and_quiet_stories_go_and_active_ones_stay(
    engine: Engine, settings: Settings
) -> None:
    with session_scope(engine) as session:
        old = [
            _clustered(session, settings, s, f"Quake in Valmora ({s})", QUAKE, 0)
            for s in ("a", "b")
        ]
        vote_old = _clustered(session, settings, "a", "Estoria passes pension reform", VOTE, 0)
        vote_new = _clustered(
            session, settings, "b", "Estoria pension reform passes", VOTE, 24 * 100
        )
        ids = [a.id for a in (*old, vote_old, vote_new)]
    with session_scope(engine) as session:
        quakes = [session.get(Article, i) for i in ids[:2]]
        quake_story = {article.story_id for article in quakes if article is not None}
        vote_story = vote_old.story_id
        assert None not in quakes
        assert len(quake_story) == 1 and vote_new.story_id == vote_story  # one story each
        assert retention.preview_purge(session=session, settings=settings, now=LATER) == (2, 1)

    with session_scope(engine) as session:
        report = retention.purge_batch(session=session, settings=settings, now=LATER)
    assert (report.articles, report.stories, report.more) == (2, 1, False)
    with session_scope(engine) as session:
        remaining = set(session.exec(select(Article.id)))
        assert remaining == {vote_old.id, vote_new.id}  # the vote story is still active: kept whole
        assert session.get(Story, quake_story.pop()) is None
        assert session.get(Story, vote_story) is not None
        story_ids = set(session.exec(select(StoryIndexEntry.story_id)))
        assert story_ids == {vote_story}
        assert {t.canonical_url for t in session.exec(select(Tombstone))} == {
            a.canonical_url for a in old
        }
        assert retention.preview_purge(session=session, settings=settings, now=LATER) == (0, 0)


def test_purge_works_in_batches_and_keeps_copies_of_purged_originals(
    engine: Engine, tmp_path: object, settings: Settings
) -> None:
    settings = settings.model_copy(update={"purge_batch_size": 2})
    with session_scope(engine) as session:
        for index in range(5):  # one story of five articles: it outlives the first batches
            _clustered(session, settings, f"s{index}", f"Old report {index}", QUAKE, index)
        copy = add_extracted_article(session, "late", "A late copy", VOTE, hours=24 * 110)
        original = session.exec(select(Article).order_by(col(Article.id))).first()
        assert original is not None
        copy.duplicate_of_id = original.id
    reports: list[retention.PurgeReport] = []
    while not reports or reports[-1].more:
        with session_scope(engine) as session:
            reports.append(retention.purge_batch(session=session, settings=settings, now=LATER))
    assert [(r.articles, r.stories) for r in reports] == [(2, 0), (2, 0), (1, 1)]
    with session_scope(engine) as session:
        (survivor,) = session.exec(select(Article)).all()
        assert survivor.id == copy.id and survivor.duplicate_of_id is None
        assert _count(session, Tombstone) == 5


def test_a_feed_that_still_carries_a_purged_entry_does_not_bring_it_back(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    # Undated entries: only a tombstone can tell that they were stored and purged before.
    items = "".join(
        f"<item><guid>g{i}</guid><title>Entry {i}</title><link>{site.url(f'/a/{i}')}</link></item>"
        for i in range(2)
    )
    feed = site.serve(
        "/feed", f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'
    )
    with session_scope(engine) as session:
        source, _ = store.add_source(session=session, url=feed, now=NOW)
        source_id = source.id or 0
    fetcher = Fetcher(settings)
    with session_scope(engine) as session:
        first = pipeline.poll_feed(
            source_id, session=session, fetcher=fetcher, settings=settings, now=NOW
        )
    assert len(first.new_article_ids) == 2
    with session_scope(engine) as session:
        assert retention.purge_batch(session=session, settings=settings, now=LATER).articles == 2

    later = LATER + timedelta(
        days=80
    )  # still carried 80 days on: the sighting renews the tombstone
    with session_scope(engine) as session:
        stored = session.get(type(source), source_id)
        assert stored is not None
        stored.etag = stored.last_modified = None
        again = pipeline.poll_feed(
            source_id, session=session, fetcher=fetcher, settings=settings, now=later
        )
    assert again.new_article_ids == []
    with session_scope(engine) as session:
        assert _count(session, Article) == 0
        assert {t.last_seen_at for t in session.exec(select(Tombstone))} == {later}
        # A period after the last sighting, the tombstones expire.
        gone = retention.purge_batch(
            session=session, settings=settings, now=later + timedelta(days=91)
        )
    assert gone.tombstones_expired == 2
    fetcher.close()


def test_entries_older_than_the_retention_period_are_not_stored(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    dates = {"old": "Mon, 04 Aug 2025 12:00:00 GMT", "new": "Wed, 03 Dec 2025 12:00:00 GMT"}
    items = "".join(
        f"<item><guid>{key}</guid><title>{key}</title><link>{site.url('/' + key)}</link>"
        f"<pubDate>{date}</pubDate></item>"
        for key, date in dates.items()
    )
    feed = site.serve(
        "/feed", f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'
    )
    with session_scope(engine) as session:
        source, _ = store.add_source(session=session, url=feed, now=NOW)
    fetcher = Fetcher(settings)
    with session_scope(engine) as session:
        pipeline.poll_feed(
            source.id or 0, session=session, fetcher=fetcher, settings=settings, now=NOW
        )
        assert list(session.exec(select(Article.guid))) == ["new"]
    fetcher.close()


def test_purge_command_previews_then_purges(engine: Engine, run: Invoke) -> None:
    with session_scope(engine) as session:  # NOW is long past the retention period of today
        add_extracted_article(session, "a", "An old report", QUAKE)
    preview = run("purge", "--dry-run")
    assert "would purge 1 articles and 0 stories" in preview.output
    with session_scope(engine) as session:
        assert _count(session, Article) == 1
    done = run("purge")
    assert "purged 1 articles and 0 stories" in done.output
    with session_scope(engine) as session:
        assert (_count(session, Article), _count(session, Tombstone)) == (0, 1)
