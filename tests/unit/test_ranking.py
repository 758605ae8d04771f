"""The hot score and the API's cursors (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aggregator import ranking
from aggregator.queries import CursorError, decode_cursor, encode_cursor, excerpt, search_words

NOW = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)


def hot(outlets: int, articles: int, hours_ago: float, recent: int = 0) -> float:
    return ranking.hot_score(
        outlets=outlets,
        articles=articles,
        last_seen=NOW - timedelta(hours=hours_ago),
        now=NOW,
        recent_articles=recent,
    )


@pytest.mark.parametrize(
    ("outlets", "articles", "hours_ago", "recent", "expected"),
    [
        (1, 1, 0, 0, 1.0),
        (4, 4, 0, 0, 4.0),
        (4, 8, 0, 0, 5.0),  # four follow-ups are worth one more outlet
        (4, 4, 12, 0, 2.0),  # one half-life
        (4, 4, 24, 0, 1.0),
        (2, 2, 0, 2, 3.0),  # growth
        (3, 3, -5, 0, 3.0),  # a last article "from the future" is not newer than now
        (0, 0, 0, 0, 0.0),
    ],
)
def test_hot_score_follows_the_documented_formula(
    outlets: int, articles: int, hours_ago: float, recent: int, expected: float
) -> None:
    assert hot(outlets, articles, hours_ago, recent) == pytest.approx(expected)


def test_outlets_weigh_more_than_articles_of_one_outlet() -> None:
    assert hot(3, 3, 2) > hot(1, 6, 2)


def test_a_story_never_loses_score_by_gaining_an_article() -> None:
    base = hot(3, 5, 6, 1)
    assert hot(4, 6, 6, 1) >= base  # a new outlet
    assert hot(3, 6, 6, 1) >= base  # a follow-up
    assert hot(3, 6, 1, 2) >= base  # a recent article: newer, growing


def test_old_stories_fade_below_the_hot_window() -> None:
    hours = ranking.HOT_WINDOW.total_seconds() / 3600
    assert hot(10, 10, hours) < 10 / 256 + 1e-9


def test_cursors_round_trip_and_refuse_forgeries() -> None:
    cursor = encode_cursor("recent", (1733313600.5, 42))
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor, sort="recent", length=2) == (1733313600.5, 42)
    with pytest.raises(CursorError):
        decode_cursor(cursor, sort="size", length=2)
    with pytest.raises(CursorError):
        decode_cursor(cursor, sort="recent", length=1)
    for forged in ("", "!!", "bm90IGpzb24", encode_cursor("recent", (True, 1))):
        with pytest.raises(CursorError):
            decode_cursor(forged, sort="recent", length=2)
    with pytest.raises(CursorError):
        decode_cursor(encode_cursor("id", (2**70,)), sort="id", length=1)


def test_search_words_and_excerpts() -> None:
    assert search_words('Putin\'s "peace" plan — OR NOT *') == [
        "putin",
        "s",
        "peace",
        "plan",
        "or",
        "not",
    ]
    assert search_words("!!! ???") == []
    assert len(search_words("a " * 100)) == 16
    text = "word " * 200
    cut = excerpt(text, 50)
    assert cut.endswith("…") and len(cut) <= 51 and "  " not in cut
    assert excerpt("<p>Hello</p>\n\n world") == "Hello world"
