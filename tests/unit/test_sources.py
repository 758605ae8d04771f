import pytest

from aggregator.sources import SourceEntry, SourceListError, parse_source_list, render_opml


def test_toml_list() -> None:
    data = b'[[source]]\nurl = "https://a.example/rss"\ntitle = "A"\n[[source]]\nurl = "https://b.example/atom"\n'
    assert parse_source_list(data, filename="x.toml") == [
        SourceEntry("https://a.example/rss", "A"),
        SourceEntry("https://b.example/atom", ""),
    ]


def test_opml_round_trip_keeps_urls_titles_and_drops_repeats() -> None:
    entries = [
        SourceEntry("https://a.example/rss", "A & Co <News>"),
        SourceEntry("https://b.example/x"),
    ]
    document = render_opml([*entries, entries[0]])
    assert parse_source_list(document, filename="x.opml") == entries


def test_nested_opml_outlines_are_found() -> None:
    data = b"""<?xml version="1.0"?><opml version="1.0"><body><outline text="News">
    <outline text="A" xmlUrl="https://a.example/rss"/></outline></body></opml>"""
    assert parse_source_list(data, filename="x.xml") == [SourceEntry("https://a.example/rss", "A")]


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"[[source]]\nurl = 'ftp://a.example/x'\n", "x.toml", "not an http"),
        (b"[[source]\n", "x.toml", "invalid TOML"),
        (b"<opml><body>", "x.opml", "invalid OPML"),
        (b"<rss/>", "x.opml", "root element"),
        (
            b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><opml><body>'
            b'<outline xmlUrl="&e;"/></body></opml>',
            "x.opml",
            "external entity",
        ),
        # urlsplit raises ValueError on these, and a TOML array of non-tables has no .get
        (b"[[source]]\nurl = 'http://[a.example/rss'\n", "x.toml", "not an http"),
        (
            b'<opml><body><outline xmlUrl="http://[a.example/rss"/></body></opml>',
            "x.opml",
            "not an",
        ),
        (b"source = [1, 2]\n", "x.toml", "expected \\[\\[source\\]\\] tables"),
        # PostgreSQL refuses NUL in text: the import would fail at the database instead
        (b'[[source]]\nurl = "https://a.example/rss"\ntitle = "A\\u0000"\n', "x.toml", "NUL"),
    ],
)
def test_bad_lists_get_a_clear_error(data: bytes, filename: str, message: str) -> None:
    with pytest.raises(SourceListError, match=message):
        parse_source_list(data, filename=filename)
