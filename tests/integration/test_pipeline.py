"""The pipeline stages against a real HTTP server on loopback and a real store (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from aggregator import pipeline, store
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.extract import Extracted
from aggregator.fetch import Fetcher
from aggregator.models import Article, ExtractionStatus, Source, Story
from aggregator.settings import Settings
from aggregator.urls import canonical_url
from tests.conftest import FixtureSite, make_test_settings
from tests.pages import article_page, rss_feed

NOW = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)
STRIKE = [
    "A Russian missile struck the city of Kryvyi Rih overnight, wounding six people including a "
    "three-year-old girl, regional officials said on Thursday morning.",
    "More than forty residential buildings, a school and gas pipelines were damaged in the attack "
    "on the industrial city, according to the head of the regional military administration.",
    "Rescue crews worked through the night to clear debris from the damaged apartment blocks.",
]
STRIKE_B = [
    "Six people were wounded when a Russian missile hit residential districts of Kryvyi Rih in "
    "central Ukraine, among them a girl aged three, the regional governor reported.",
    "Officials said a school, gas pipes and over forty apartment buildings in Kryvyi Rih were "
    "damaged, and that rescue crews had cleared debris through the night.",
]
COMET = [
    "Astronomers at a mountain observatory have identified a faint comet on an unusual orbit that "
    "will bring it close to the inner solar system late next year.",
    "The object was spotted in survey images taken over three nights and confirmed by two other "
    "telescopes, the team said in a circular to the astronomical community.",
]


def _publish(site: FixtureSite) -> str:
    pages = {
        "/a/strike": ("Missile strike wounds six in Kryvyi Rih", STRIKE),
        "/b/strike": ("Kryvyi Rih hit by Russian missile, girl among wounded", STRIKE_B),
        "/c/comet": ("Astronomers spot comet on unusual orbit", COMET),
    }
    for path, (title, paragraphs) in pages.items():
        site.serve(path, article_page(title, paragraphs), headers={"Content-Type": "text/html"})
    items = [
        (path, site.url(path) + "?utm_source=rss", title) for path, (title, _) in pages.items()
    ]
    items.append(("/gone", site.url("/gone"), "A page that is not there"))
    return site.serve("/feed.xml", rss_feed("Fixture", items), headers={"ETag": '"v1"'})


def _add_source(engine: Engine, feed_url: str) -> int:
    with session_scope(engine) as session:
        return store.add_source(session=session, url=feed_url, now=NOW)[0].id or 0


def _poll_once(engine: Engine, settings: Settings, source_id: int) -> pipeline.PollOutcome:
    fetcher = Fetcher(settings)
    try:
        with session_scope(engine) as session:
            return pipeline.poll_feed(
                source_id, session=session, fetcher=fetcher, settings=settings, now=NOW
            )
    finally:
        fetcher.close()


def _run_once(engine: Engine, settings: Settings, feed_url: str) -> list[int]:
    with session_scope(engine) as session:
        source, _ = store.add_source(session=session, url=feed_url, now=NOW)
        source.next_poll_at = NOW
        source_id = source.id or 0
    outcome = _poll_once(engine, settings, source_id)
    _fetch_and_cluster(engine, settings, outcome.new_article_ids)
    return outcome.new_article_ids


def _fetch_and_cluster(engine: Engine, settings: Settings, article_ids: list[int]) -> None:
    fetcher = Fetcher(settings)
    for article_id in article_ids:
        with session_scope(engine) as session:
            go_on = pipeline.fetch_article(
                article_id, session=session, fetcher=fetcher, settings=settings, now=NOW
            )
        if go_on:
            with session_scope(engine) as session:
                pipeline.cluster_article(article_id, session=session, settings=settings, now=NOW)
    fetcher.close()


def test_feed_to_stories(engine: Engine, settings: Settings, site: FixtureSite) -> None:
    feed_url = _publish(site)
    new_ids = _run_once(engine, settings, feed_url)
    assert len(new_ids) == 4
    with session_scope(engine) as session:
        articles = {a.guid: a for a in session.exec(select(Article)).all()}
        strike_a, strike_b, comet = (
            articles["/a/strike"],
            articles["/b/strike"],
            articles["/c/comet"],
        )
        gone = articles["/gone"]
        assert strike_a.extraction_status == ExtractionStatus.EXTRACTED
        assert "forty residential buildings" in strike_a.text
        assert "Related" not in strike_a.text and "Copyright" not in strike_a.text
        assert strike_a.canonical_url == site.url("/a/strike")
        assert strike_a.story_id is not None and strike_a.story_id == strike_b.story_id
        assert comet.story_id not in (None, strike_a.story_id)
        # The 404 page falls back to the feed's summary and says so.
        assert gone.extraction_status == ExtractionStatus.SUMMARY
        assert gone.text == "A page that is not there (summary)"
        assert gone.fetch_error == "HTTP 404"
        story = session.get(Story, strike_a.story_id)
        assert story is not None and story.article_count == 2 and story.source_count == 1
        source = session.exec(select(Source)).one()
        assert source.health == "ok" and source.etag == '"v1"' and source.title == "Fixture"


def test_second_run_adds_nothing(engine: Engine, settings: Settings, site: FixtureSite) -> None:
    feed_url = _publish(site)
    _run_once(engine, settings, feed_url)
    with session_scope(engine) as session:
        before = (len(session.exec(select(Article)).all()), len(session.exec(select(Story)).all()))
    assert _run_once(engine, settings, feed_url) == []
    with session_scope(engine) as session:
        after = (len(session.exec(select(Article)).all()), len(session.exec(select(Story)).all()))
    assert after == before == (4, 3)


def _dated_feed(site: FixtureSite, items: list[tuple[str, str]]) -> str:
    """A feed whose items (path, pubDate) link to pages of this site."""
    entries = "".join(
        f"<item><guid>{path}</guid><link>{site.url(path)}</link><title>Item {path}</title>"
        f"<pubDate>{date}</pubDate></item>"
        for path, date in items
    )
    body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Dates</title>{entries}</channel></rss>'
    return site.serve("/dated.xml", body)


def test_implausible_publication_dates_give_way_to_the_next_best(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    """A feed date after the entry was seen or before the web gives way to the page's own date,
    and if that is implausible too, to the discovery time; the article is kept either way."""
    site.serve("/future", article_page("Strike", STRIKE, published="2025-12-04T09:00:00Z"))
    site.serve("/epoch", article_page("Comet", COMET, published="2099-01-01T00:00:00Z"))
    feed = _dated_feed(
        site,
        [
            ("/future", "Thu, 01 Jan 2099 00:00:00 +0000"),
            ("/epoch", "Thu, 01 Jan 1970 00:00:00 +0000"),
        ],
    )
    assert len(_run_once(engine, settings, feed)) == 2
    with session_scope(engine) as session:
        dates = {a.guid: a.published_at for a in session.exec(select(Article)).all()}
    assert dates == {
        "/future": datetime(2025, 12, 4, 9, 0, tzinfo=UTC),  # the page's own date
        "/epoch": NOW,  # seen then: the discovery time
    }


HOSTILE_ENTRIES = {
    # character references the loose parser decodes to NUL (PostgreSQL refuses it in text) or to
    # a lone surrogate (no driver encodes it), or raises on
    "nul": "<title>Strike&#0;</title><guid>s&#0;1</guid><description>x&#0;y</description>",
    "surrogate": "<title>Strike&#xD800;</title><description>&#xDFFF;</description>",
    "beyond-unicode": "<title>Strike&#x110000;</title>",
    # year 1 at UTC+1 is year 0 in UTC, which datetime cannot hold
    "year-zero": "<title>Strike</title><dc:date xmlns:dc='http://purl.org/dc/elements/1.1/'>"
    "0001-01-01T00:00:00+01:00</dc:date>",
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE_ENTRIES))
def test_a_hostile_entry_costs_no_other_entry(
    engine: Engine, settings: Settings, site: FixtureSite, hostile: str
) -> None:
    """Whatever one entry holds, the poll succeeds, and every entry with a usable link is kept."""
    items = (
        f"<item>{HOSTILE_ENTRIES[hostile]}<link>{site.url('/strike')}</link></item>"
        f"<item><title>Comet</title><link>{site.url('/comet')}</link></item>"
    )
    feed_url = site.serve(
        "/hostile.xml", f'<rss version="2.0"><channel><title>H</title>{items}</channel></rss>'
    )
    outcome = _poll_once(engine, settings, _add_source(engine, feed_url))
    assert (outcome.status, len(outcome.new_article_ids)) == ("new", 2)
    with session_scope(engine) as session:
        titles = sorted(a.title for a in session.exec(select(Article)).all())
    assert titles == ["Comet", "Strike"]


LONG_PATH = "".join(f"{n:x}" for n in range(2000))


@pytest.mark.parametrize(
    ("link", "kept"),
    [
        ("http://127.0.0.9:99999/a", False),  # no port: no URL at all
        ("http://[127.0.0.9/a", False),  # no IPv6 address: no URL at all
        (f"/{LONG_PATH}", True),  # longer than PostgreSQL's unique index can hold
    ],
)
def test_an_entry_with_an_unusable_link_costs_no_other_entry(
    engine: Engine, settings: Settings, site: FixtureSite, link: str, kept: bool
) -> None:
    items = (
        f"<item><title>Odd</title><link>{link}</link></item>"
        f"<item><title>Comet</title><guid>{LONG_PATH}</guid><link>{site.url('/comet')}</link>"
        "</item>"
    )
    feed_url = site.serve(
        "/links.xml", f'<rss version="2.0"><channel><title>L</title>{items}</channel></rss>'
    )
    outcome = _poll_once(engine, settings, _add_source(engine, feed_url))
    assert outcome.status == "new"
    with session_scope(engine) as session:
        titles = sorted(a.title for a in session.exec(select(Article)).all())
    assert titles == (["Comet", "Odd"] if kept else ["Comet"])


def test_a_feed_redirecting_to_a_malformed_url_is_recorded_as_an_error(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    feed_url = site.serve("/moved.xml", "", status=301, headers={"Location": "http://[127.0.0.9/"})
    source_id = _add_source(engine, feed_url)
    outcome = _poll_once(engine, settings, source_id)
    assert outcome.status == "error"
    with session_scope(engine) as session:
        source = session.get(Source, source_id)
        assert source is not None and "redirect to" in (source.last_error or "")


def test_a_nul_in_a_pages_structured_data_does_not_fail_its_fetch(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    data = (
        '{"@context": "https://schema.org", "@type": "NewsArticle",'
        ' "author": {"@type": "Person", "name": "Jane\\u0000 Doe"}}'
    )
    page = article_page("Missile strike wounds six", STRIKE).replace(
        "</head>", f'<script type="application/ld+json">{data}</script></head>'
    )
    site.serve("/strike", page, headers={"Content-Type": "text/html"})
    feed = site.serve("/feed.xml", rss_feed("F", [("s", site.url("/strike"), "Strike")]))
    (article_id,) = _run_once(engine, settings, feed)
    with session_scope(engine) as session:
        article = session.get(Article, article_id)
        assert article is not None
        assert (article.extraction_status, article.author) == ("extracted", "Jane Doe")


def test_a_feed_moved_to_an_overlong_url_keeps_being_polled(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    """sources.url is unique: PostgreSQL cannot index a URL over 2704 bytes, and the poll that
    moved the source there failed (as a lost connection: retried, never recorded)."""
    target = site.serve("/" + LONG_PATH, rss_feed("F", [("s", site.url("/strike"), "Strike")]))
    feed_url = site.serve("/old.xml", "", status=301, headers={"Location": target})
    source_id = _add_source(engine, feed_url)
    for _ in range(settings.feed_move_confirmations + 1):
        outcome = _poll_once(engine, settings, source_id)
        assert outcome.status in ("new", "not_modified")


# ---------------------------------------------------------------- unforeseen failures
# A bug of ours, or input nobody foresaw, is simulated by making one stage raise; the database
# refusing a value is real (PostgreSQL refuses NUL in text).


class UnforeseenError(RuntimeError):
    pass


def _raise_unforeseen(*_: object, **__: object) -> None:
    raise UnforeseenError("stage broke")


def test_an_unforeseen_poll_failure_is_recorded_on_the_source_and_undone(
    engine: Engine, settings: Settings, site: FixtureSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = site.serve("/feed.xml", rss_feed("F", [("s", site.url("/strike"), "Strike")]))
    source_id = _add_source(engine, feed)
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "parse_feed", _raise_unforeseen)
        broken = _poll_once(engine, settings, source_id)
    with session_scope(engine) as session:
        source = session.get(Source, source_id)
        assert source is not None
        assert broken.status == "error"
        assert source.last_error == "poll failed: UnforeseenError: stage broke"
        assert (source.consecutive_errors, source.last_polled_at) == (1, NOW)
        assert source.next_poll_at is not None and source.next_poll_at > NOW
        assert source.etag is None and session.exec(select(Article)).all() == []
    fixed = _poll_once(engine, settings, source_id)  # once the cause is gone, polls work
    assert fixed.status == "new" and len(fixed.new_article_ids) == 1


def _linkless_feed(items: list[str]) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Wire</title>'
        f"{''.join(f'<item>{item}</item>' for item in items)}</channel></rss>"
    )


def test_feed_items_without_a_link_are_stored_with_the_feeds_text(
    engine: Engine, settings: Settings, site: FixtureSite
) -> None:
    """RSS allows items that are only a text (a wire's short bulletins): each is an article
    whose text is the feed's, with no page to fetch, and a later edit or link is taken in."""
    strike = f"<title>Missile strike wounds six</title><description>{STRIKE[0]}</description>"
    comet = f"<title>Comet on odd orbit</title><description>{COMET[0]}</description>"
    comet += '<guid isPermaLink="false">bulletin-2</guid>'
    short = "<title>A headline and nothing else</title>"
    feed = site.serve(
        "/wire.xml",
        _linkless_feed(
            [
                f'<guid isPermaLink="false">bulletin-1</guid>{strike}',
                comet,
                short,  # nothing to cluster: not stored
                f"<title>Rescue crews clear debris</title><description>{STRIKE[2]}</description>",
            ]
        ),
    )
    first = _run_once(engine, settings, feed)
    assert len(first) == 3 and site.hits == ["/wire.xml"]  # no page fetched for any
    with session_scope(engine) as session:
        stored = {a.title: a for a in session.exec(select(Article)).all()}
        assert set(stored) == {
            "Missile strike wounds six",
            "Comet on odd orbit",
            "Rescue crews clear debris",
        }
        bulletin = stored["Missile strike wounds six"]
        assert (bulletin.url, bulletin.fetch_error) == ("", None)
        assert bulletin.extraction_status == ExtractionStatus.SUMMARY.value
        assert bulletin.text == STRIKE[0] and bulletin.story_id is not None
        assert len({a.canonical_url for a in stored.values()}) == 3
        assert stored["Rescue crews clear debris"].guid.startswith("title:")  # no GUID
    edited = strike.replace(STRIKE[0], f"{STRIKE[0]} {STRIKE[1]}")
    site.serve("/comet", article_page("Astronomers spot comet on unusual orbit", COMET))
    site.serve(
        "/wire.xml",
        _linkless_feed(
            [
                f'<guid isPermaLink="false">bulletin-1</guid>{edited}',
                f"{comet}<link>{site.url('/comet')}</link>",
                short,
                f"<title>Rescue crews clear debris</title><description>{STRIKE[2]}</description>",
            ]
        ),
    )
    second = _poll_once(engine, settings, _source_id(engine))
    assert len(second.new_article_ids) == 2  # the edited and the linked, updated in place
    _fetch_and_cluster(engine, settings, second.new_article_ids)
    with session_scope(engine) as session:
        stored = {a.title: a for a in session.exec(select(Article)).all()}
        assert len(stored) == 3 and STRIKE[1] in stored["Missile strike wounds six"].text
        linked = stored["Comet on odd orbit"]
        assert linked.url == site.url("/comet") and "/comet" in site.hits
        assert linked.extraction_status == ExtractionStatus.EXTRACTED.value


@pytest.mark.parametrize(
    "pub_date",
    [
        "<pubDate>Thu, 04 Dec 2025 08:00:00 GMT</pubDate>",
        "",  # undated
        "<pubDate>Tue, 01 Jan 2030 08:00:00 GMT</pubDate>",  # in the future: not believed
    ],
    ids=["dated", "undated", "future-dated"],
)
def test_an_item_without_guid_or_link_that_gains_a_link_stays_one_article(
    engine: Engine, settings: Settings, site: FixtureSite, pub_date: str
) -> None:
    """Known by its title and date while it has no link, by its link once it has one: the
    link makes it fetch its page, not a second article."""
    bulletin = f"<title>Missile strike wounds six</title><description>{STRIKE[0]}</description>"
    bulletin += pub_date
    feed = site.serve("/wire.xml", _linkless_feed([bulletin]))
    (first,) = _run_once(engine, settings, feed)
    site.serve("/strike", article_page("Missile strike wounds six", STRIKE))
    site.serve("/wire.xml", _linkless_feed([f"{bulletin}<link>{site.url('/strike')}</link>"]))
    second = _poll_once(engine, settings, _source_id(engine))
    assert second.new_article_ids == [first]
    _fetch_and_cluster(engine, settings, second.new_article_ids)
    third = _poll_once(engine, settings, _source_id(engine))  # now known by its link
    assert third.new_article_ids == []
    with session_scope(engine) as session:
        (article,) = session.exec(select(Article)).all()
        assert (article.id, article.url) == (first, site.url("/strike"))
        assert article.guid == canonical_url(site.url("/strike"))
        assert article.extraction_status == ExtractionStatus.EXTRACTED.value
        assert STRIKE[1] in article.text and article.story_id is not None


def _source_id(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.exec(select(Source)).one().id or 0


def test_an_unforeseen_extraction_failure_keeps_the_feeds_summary(
    engine: Engine, settings: Settings, site: FixtureSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.serve("/strike", article_page("Missile strike wounds six", STRIKE))
    feed = site.serve("/feed.xml", rss_feed("F", [("s", site.url("/strike"), "Strike")]))
    monkeypatch.setattr(pipeline, "extract_article", _raise_unforeseen)
    (article_id,) = _run_once(engine, settings, feed)
    with session_scope(engine) as session:
        article = session.get(Article, article_id)
        assert article is not None
        assert article.extraction_status == ExtractionStatus.SUMMARY.value
        assert article.text == "Strike (summary)" and article.story_id is not None
        assert article.fetch_error == "extraction failed: UnforeseenError: stage broke"


def test_a_fetch_the_database_refuses_is_recorded_not_fetched_again(
    postgres_url: str, tmp_path: Path, site: FixtureSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_test_settings(tmp_path / "data", postgres_url)
    engine = make_engine(postgres_url)
    upgrade_database(engine)
    site.serve("/strike", article_page("Missile strike wounds six", STRIKE))
    feed = site.serve("/feed.xml", rss_feed("F", [("s", site.url("/strike"), "Strike")]))
    unstorable = Extracted("Strike", "Six wounded.\x00" * 40, None, None, "en", None)
    monkeypatch.setattr(pipeline, "extract_article", lambda *_, **__: unstorable)
    (article_id,) = _run_once(engine, settings, feed)
    with session_scope(engine) as session:
        article = session.get(Article, article_id)
        assert article is not None
        assert article.extraction_status == ExtractionStatus.FAILED.value
        assert (article.fetch_error or "").startswith("storing the fetch failed: DataError")
        assert (article.text, article.fetched_at) == ("", NOW)
    engine.dispose()
