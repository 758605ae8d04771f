"""Feed fixtures beside their expected parse: tests/fixtures/feeds/x.xml ~ x.expected.json."""

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.feeds import FeedError, feed_links, parse_feed, plausible_date
from aggregator.urls import canonical_url

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
FEED_URL = "https://feeds.example/feed.xml"


def _as_json(feed: object) -> dict[str, object]:
    data: dict[str, Any] = dataclasses.asdict(feed)  # type: ignore[call-overload]
    for entry in data["entries"]:
        del entry["entry_hash"]  # derived; see test_feed_identity.py
        entry["published"] = entry["published"].isoformat() if entry["published"] else None
    data["well_formed"] = data.pop("problem") is None
    del data["version"]
    return data


@pytest.mark.parametrize("name", sorted(p.stem for p in FEEDS.glob("*.xml")))
def test_feed_parses_to_expected_values(name: str) -> None:
    body = (FEEDS / f"{name}.xml").read_bytes()
    expected = json.loads((FEEDS / f"{name}.expected.json").read_text("utf-8"))
    parsed = parse_feed(body, url=FEED_URL, headers={"Content-Type": "application/rss+xml"})
    assert _as_json(parsed) == expected


def test_malformed_item_keeps_good_entries_and_reports_the_problem() -> None:
    parsed = parse_feed((FEEDS / "malformed_item.xml").read_bytes(), url=FEED_URL)
    assert parsed.problem is not None
    assert [e.guid for e in parsed.entries] == ["vc-1", "vc-2", "vc-3"]


def test_relative_links_resolve_against_the_feed_url() -> None:
    body = b'<rss version="2.0"><channel><title>T</title><item><title>A</title><link>/a/1</link></item></channel></rss>'
    (entry,) = parse_feed(body, url=FEED_URL).entries
    assert entry.link == "https://feeds.example/a/1"


@pytest.mark.parametrize(
    "body", [b"", b"<html><body>Not a feed</body></html", b"\x00\xff\xfe garbage"]
)
def test_non_feeds_are_refused(body: bytes) -> None:
    with pytest.raises(FeedError, match="not a feed"):
        parse_feed(body, url=FEED_URL)


SEEN = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("claimed", "believed"),
    [
        (None, False),
        (SEEN - timedelta(hours=3), True),  # the usual case
        (SEEN - timedelta(days=4000), True),  # old, but of the web era: retention decides
        (SEEN + timedelta(minutes=10), True),  # the publisher's clock runs a little ahead
        (SEEN + timedelta(hours=5), False),  # a wrong time zone, or a scheduled post
        (SEEN + timedelta(days=365 * 70), False),
        (datetime(1970, 1, 1, tzinfo=UTC), False),  # a zero date
    ],
)
def test_only_a_plausible_publication_date_is_believed(
    claimed: datetime | None, believed: bool
) -> None:
    assert plausible_date(claimed, SEEN) == (claimed if believed else None)


def _rss_items(*items: str) -> bytes:
    good = "<item><title>Good</title><link>/good</link></item>"
    body = "".join(items) + good
    return f'<rss version="2.0"><channel><title>T</title>{body}</channel></rss>'.encode()


def _storable(value: str | None) -> bool:
    """PostgreSQL refuses NUL in text, and no database driver encodes a lone surrogate."""
    return not any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in value or "")


@pytest.mark.parametrize(
    "item",
    [
        # character references to code points XML forbids: the strict parser gives up and the
        # loose one turns them into the characters themselves
        "<item><title>A&#0;B</title><link>/a</link><description>x&#0;y</description></item>",
        "<item><title>A</title><guid>g&#0;1</guid><link>/a&#0;b</link><author>a&#0;b</author>"
        "</item>",
        "<item><title>A&#xD800;B</title><link>/a</link><description>&#xDFFF;</description></item>",
        "<item><title>A&#x110000;B</title><link>/a</link><description>&#99999999999;&#x"
        + "9" * 5000
        + ";&#"
        + "0" * 5000
        + "65;</description></item>",
    ],
)
def test_unstorable_characters_never_reach_an_entry(item: str) -> None:
    parsed = parse_feed(_rss_items(item), url=FEED_URL)
    assert [e.title for e in parsed.entries] == ["AB" if "B<" in item else "A", "Good"]
    for entry in parsed.entries:
        fields = (entry.guid, entry.link, entry.title, entry.summary, entry.author)
        assert all(_storable(value) for value in fields), entry


@pytest.mark.parametrize(
    "body",
    [
        # UTF-16 bodies are not repaired byte-wise; feedparser's loose parser then raises
        (
            '<?xml version="1.0" encoding="utf-16"?><rss version="2.0"><channel><title>T</title>'
            "<item><title>&#xD800;</title><link>https://a.example/</link></item></channel></rss>"
        ).encode("utf-16"),
        # feedparser 6.0.14's loose parser: KeyError 'links' (found by fuzzing)
        b'<rss version="2.0"><channel><title>T</title><item><title>x</title>'
        b"<link><item//</link></item></channel></rss>",
    ],
)
def test_a_feed_the_loose_parser_cannot_read_is_refused_not_raised(body: bytes) -> None:
    with pytest.raises(FeedError, match="unreadable feed"):
        parse_feed(body, url=FEED_URL)


@pytest.mark.parametrize(
    "link",
    ["http://news.example:99999/a", "http://news.example:abc/a", "http://[news.example/a"],
)
def test_an_entry_with_an_unusable_link_does_not_sink_the_feed(link: str) -> None:
    parsed = parse_feed(
        _rss_items(f"<item><title>Bad</title><link>{link}</link></item>"), url=FEED_URL
    )
    assert [(e.title, e.link) for e in parsed.entries] == [
        ("Bad", ""),
        ("Good", "https://feeds.example/good"),
    ]


def test_a_date_outside_the_calendar_is_no_date() -> None:
    # year 1 at UTC+1 is year 0 in UTC, which datetime cannot hold
    date = (
        '<dc:date xmlns:dc="http://purl.org/dc/elements/1.1/">0001-01-01T00:00:00+01:00</dc:date>'
    )
    parsed = parse_feed(
        _rss_items(f"<item><title>A</title><link>/a</link>{date}</item>"), url=FEED_URL
    )
    assert [(e.title, e.published) for e in parsed.entries] == [("A", None), ("Good", None)]


# PostgreSQL cannot index a value of more than 2704 bytes (articles.canonical_url is unique, and
# (source_id, guid) too): a longer link or GUID would fail the insert and, with it, the whole poll.
def test_overlong_links_and_guids_stay_indexable() -> None:
    path = "".join(f"{n:x}" for n in range(2000))
    items = (
        f"<item><title>Long link</title><link>/{path}</link></item>"
        f"<item><title>Long GUID</title><guid>{path}</guid><link>/b</link></item>"
        f"<item><title>Long query</title><link>/c?q={'é' * 800}</link></item>"
    )
    parsed = parse_feed(_rss_items(items), url=FEED_URL)
    assert [e.link for e in parsed.entries] == [
        f"https://feeds.example/{path}",  # the article is kept, under a bounded key
        "https://feeds.example/b",
        f"https://feeds.example/c?q={'é' * 800}",
        "https://feeds.example/good",
    ]
    keys = [e.guid for e in parsed.entries] + [canonical_url(e.link) for e in parsed.entries]
    assert all(len(key.encode()) <= 2000 for key in keys)
    assert parsed.entries[1].guid.startswith(path[:1000])  # the feed's GUID, bounded


def test_a_broken_feed_link_on_a_page_hides_none_of_the_others() -> None:
    page = (
        b'<html><head><link rel="alternate" type="application/rss+xml" href="http://[x/feed">'
        b'<link rel="alternate" type="application/atom+xml" href="/atom/news.xml"></head></html>'
    )
    links = feed_links(page, base_url="https://a.example/")
    assert links[0] == "https://a.example/atom/news.xml"
