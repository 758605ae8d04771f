"""Entry identity within one feed document, entry hashes, and charset/illegal-character repair."""

from datetime import UTC, datetime

import pytest

from aggregator.feeds import entry_identities, identity_candidates, parse_feed

DAY1 = datetime(2025, 12, 1, tzinfo=UTC)
DAY2 = datetime(2025, 12, 2, tzinfo=UTC)
URL = "https://feeds.example/feed.xml"


def _ids(*entries: tuple[str, str, datetime | None, str]) -> list[str]:
    return entry_identities([identity_candidates(*entry) for entry in entries])


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        # GUIDs, unique: used as they are
        ([("g1", "https://a/1", None, "A"), ("g2", "https://a/2", None, "B")], ["g1", "g2"]),
        # no GUID: the canonical link, tracking parameters stripped
        ([("", "https://a/1?utm_source=rss", None, "A")], ["https://a/1"]),
        # a GUID repeated in the document: those entries fall back to their links
        (
            [("same", "https://a/1", None, "A"), ("same", "https://a/2", None, "B")],
            ["https://a/1", "https://a/2"],
        ),
        # same link too: link plus date
        (
            [("", "https://a/", DAY1, "A"), ("", "https://a/", DAY2, "B")],
            ["https://a/@2025-12-01T00:00:00+00:00", "https://a/@2025-12-02T00:00:00+00:00"],
        ),
    ],
)
def test_entry_identities(
    entries: list[tuple[str, str, datetime | None, str]], expected: list[str]
) -> None:
    assert _ids(*entries) == expected


def test_without_guid_or_link_the_title_identifies_the_entry() -> None:
    first, second = _ids(("", "", None, "Only a title"), ("", "", None, "Another"))
    assert first.startswith("title:") and second.startswith("title:") and first != second


def _rss(items: str, declaration: str = '<?xml version="1.0" encoding="utf-8"?>') -> bytes:
    return (
        f'{declaration}<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()
    )


def test_an_edited_entry_keeps_its_identity_and_changes_its_hash() -> None:
    item = "<item><guid>g1</guid><title>{}</title><link>https://a/1</link></item>"
    (before,) = parse_feed(_rss(item.format("Old title")), url=URL).entries
    (after,) = parse_feed(_rss(item.format("New title")), url=URL).entries
    (again,) = parse_feed(_rss(item.format("New title")), url=URL).entries
    assert before.guid == after.guid == "g1"
    assert before.entry_hash != after.entry_hash == again.entry_hash


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        # UTF-8 body, header claims Latin-1
        (
            _rss("<item><title>Café Zürich</title><link>https://a/1</link></item>"),
            {"Content-Type": "application/rss+xml; charset=iso-8859-1"},
        ),
        # UTF-8 body, XML declaration claims Latin-1
        (
            _rss(
                "<item><title>Café Zürich</title><link>https://a/1</link></item>",
                '<?xml version="1.0" encoding="iso-8859-1"?>',
            ),
            {},
        ),
        # Windows-1252 body, header claims UTF-8
        (
            _rss("<item><title>Café Zürich</title><link>https://a/1</link></item>")
            .decode()
            .encode("cp1252"),
            {"Content-Type": "application/rss+xml; charset=utf-8"},
        ),
    ],
)
def test_lying_charsets_are_detected(body: bytes, headers: dict[str, str]) -> None:
    (entry,) = parse_feed(body, url=URL, headers=headers).entries
    assert entry.title == "Café Zürich"


def test_illegal_xml_characters_and_html_entities_do_not_lose_the_feed() -> None:
    items = (
        "<item><title>Form\x0cfeed\x01 here</title><link>https://a/1</link></item>"
        "<item><title>A&nbsp;B &eacute;t&eacute; &mdash; ok</title><link>https://a/2</link></item>"
        "<item><title>Plain</title><link>https://a/3</link></item>"
    )
    feed = parse_feed(_rss(items), url=URL)
    assert [e.title for e in feed.entries] == ["Formfeed here", "A B été — ok", "Plain"]
