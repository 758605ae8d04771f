"""The pure digest stages: scheduling in the reader's time zone, selection, summaries, rendering,
signed links."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest

from aggregator import digest
from aggregator.digest import CandidateStory, DigestPage, Outlet, Preferences
from aggregator.signing import BadToken, read_token, sign_token

NOW = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timezone", "hour", "now", "expected"),
    [
        ("UTC", 7, datetime(2025, 12, 4, 6, 59, tzinfo=UTC), None),
        ("UTC", 7, datetime(2025, 12, 4, 7, 0, tzinfo=UTC), date(2025, 12, 4)),
        # far east of UTC: 07:00 on the 5th in Kiritimati is 17:00 UTC on the 4th
        ("Pacific/Kiritimati", 7, datetime(2025, 12, 4, 16, 59, tzinfo=UTC), None),
        ("Pacific/Kiritimati", 7, datetime(2025, 12, 4, 17, 0, tzinfo=UTC), date(2025, 12, 5)),
        # far west: 07:00 on the 4th in Honolulu is 17:00 UTC on the 4th
        ("Pacific/Honolulu", 7, datetime(2025, 12, 4, 16, 0, tzinfo=UTC), None),
        ("Pacific/Honolulu", 7, datetime(2025, 12, 4, 17, 0, tzinfo=UTC), date(2025, 12, 4)),
        ("Pacific/Honolulu", 7, datetime(2025, 12, 5, 9, 59, tzinfo=UTC), date(2025, 12, 4)),
        # New York across the end of DST (2 Nov 2025): 07:00 is 11:00 UTC before, 12:00 after
        ("America/New_York", 7, datetime(2025, 11, 1, 11, 0, tzinfo=UTC), date(2025, 11, 1)),
        ("America/New_York", 7, datetime(2025, 11, 3, 11, 0, tzinfo=UTC), None),
        ("America/New_York", 7, datetime(2025, 11, 3, 12, 0, tzinfo=UTC), date(2025, 11, 3)),
        # 02:00 does not exist on 9 Mar 2025 in New York: the digest comes at 03:00
        ("America/New_York", 2, datetime(2025, 3, 9, 6, 59, tzinfo=UTC), None),
        ("America/New_York", 2, datetime(2025, 3, 9, 7, 0, tzinfo=UTC), date(2025, 3, 9)),
    ],
)
def test_due_day_follows_the_readers_clock(
    timezone: str, hour: int, now: datetime, expected: date | None
) -> None:
    assert digest.due_day(timezone, hour, now) == expected


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        digest.due_day("Mars/Olympus_Mons", 7, NOW)


@pytest.mark.parametrize(
    ("last_sent", "expected"),
    [
        (None, NOW - timedelta(hours=24)),
        (NOW - timedelta(hours=10), NOW - timedelta(hours=10)),
        (NOW - timedelta(days=10), NOW - timedelta(hours=72)),
    ],
)
def test_window_is_since_the_last_digest_within_bounds(
    last_sent: datetime | None, expected: datetime
) -> None:
    start = digest.window_start(
        last_sent, now=NOW, window=timedelta(hours=24), max_window=timedelta(hours=72)
    )
    assert start == expected


def test_message_id_is_stable_per_reader_and_day() -> None:
    first = digest.message_id(7, "A@x.example", date(2025, 12, 4), domain="news.example")
    assert first == digest.message_id(7, "a@x.example", date(2025, 12, 4), domain="news.example")
    assert first != digest.message_id(7, "a@x.example", date(2025, 12, 5), domain="news.example")
    assert first != digest.message_id(8, "a@x.example", date(2025, 12, 4), domain="news.example")
    assert re.fullmatch(r"<digest\.20251204\.7\.[0-9a-f]{16}@news\.example>", first)


def _story(
    story_id: int,
    outlets: int,
    *,
    hours_ago: float = 1,
    headline: str = "",
    sources: tuple[int, ...] = (),
    articles: int | None = None,
    titles: tuple[str, ...] = (),
) -> CandidateStory:
    source_ids = sources or tuple(range(story_id * 100, story_id * 100 + outlets))
    return CandidateStory(
        id=story_id,
        headline=headline or f"Story {story_id}",
        last_seen=NOW - timedelta(hours=hours_ago),
        article_count=articles or outlets,
        outlet_count=outlets,
        outlets=tuple(Outlet(s, f"Outlet {s}", f"https://o{s}.example/a") for s in source_ids),
        titles=titles,
    )


def _ids(selection: digest.Selection) -> list[int]:
    return [s.id for s in selection.stories]


def _select(stories: list[CandidateStory], **kwargs: object) -> digest.Selection:
    options: dict[str, object] = {
        "prefs": Preferences(),
        "sent_outlets": {},
        "now": NOW,
        "min_stories": 1,
    }
    options.update(kwargs)
    return digest.select_stories(stories, **options)  # type: ignore[arg-type]


def test_stories_are_ranked_by_outlets_and_recency() -> None:
    stories = [
        _story(1, 2),
        _story(2, 6),
        _story(3, 6, hours_ago=22),  # this morning's big story stays above the evening's small one
        _story(4, 4),
        _story(5, 3, hours_ago=40),
    ]
    assert _ids(_select(stories)) == [2, 4, 3, 1, 5]


def test_selection_stops_at_the_readers_maximum() -> None:
    stories = [_story(i, i) for i in range(1, 8)]
    assert _ids(_select(stories, prefs=Preferences(max_stories=3))) == [7, 6, 5]


@pytest.mark.parametrize(
    ("keywords", "expected"),
    [
        ((), [2, 1, 3]),
        (("ukraine",), [1]),
        (("UKRAINE", "Avalanche"), [2, 1]),
        (("peace plan",), [1]),
        (("plan peace",), []),
        (("ukr",), []),  # whole words only
        (("Reuters",), [3]),  # an article's title counts
    ],
)
def test_keywords_filter_headlines_and_titles(
    keywords: tuple[str, ...], expected: list[int]
) -> None:
    stories = [
        _story(1, 3, headline="Ukraine weighs the US peace plan"),
        _story(2, 4, headline="Avalanche warning in the Alps"),
        _story(3, 2, headline="Markets rise", titles=("Stocks up, Reuters says",)),
    ]
    assert _ids(_select(stories, prefs=Preferences(keywords=keywords))) == expected


def test_included_and_excluded_sources() -> None:
    stories = [
        _story(1, 2, sources=(1, 2)),
        _story(2, 1, sources=(3,)),
        _story(3, 2, sources=(3, 4)),
    ]
    only_3 = _select(stories, prefs=Preferences(include_sources=frozenset({3})))
    assert _ids(only_3) == [3, 2]
    without_3 = _select(stories, prefs=Preferences(exclude_sources=frozenset({3})))
    assert _ids(without_3) == [3, 1]  # equal scores: the newer story first
    assert [o.source_id for o in without_3.stories[0].outlets] == [4]  # 3 is hidden


@pytest.mark.parametrize(
    ("outlets_now", "sent_with", "included"),
    [(5, None, True), (5, 5, False), (6, 5, False), (7, 5, True), (9, 5, True)],
)
def test_a_story_sent_before_comes_again_only_with_two_more_outlets(
    outlets_now: int, sent_with: int | None, included: bool
) -> None:
    sent = {} if sent_with is None else {1: sent_with}
    selection = _select([_story(1, outlets_now)], sent_outlets=sent)
    assert (_ids(selection) == [1]) is included


def test_too_few_stories_skip_the_day_with_a_reason() -> None:
    selection = _select([_story(1, 3), _story(2, 2)], min_stories=3)
    assert selection.stories == []
    assert selection.skip_reason == "only 2 stories qualified (minimum 3)"
    assert _select([], min_stories=3).skip_reason == "only 0 stories qualified (minimum 3)"


SEED_LIKE = [
    "Russian President Vladimir Putin said on Thursday that some points of the US peace plan "
    "for Ukraine were unacceptable to Moscow. He spoke to reporters in Bishkek after a summit. "
    "“We will see,” he said. The plan has 28 points and was drafted by US envoy Steve Witkoff "
    "and Kremlin envoy Kirill Dmitriev in October.",
    "Putin said parts of the US peace plan for Ukraine were unacceptable, as Kyiv and Washington "
    "prepared further talks on the 28-point plan. European leaders have proposed changes to the "
    "plan and Ukraine's delegation is due in Florida this week.",
]


def test_summary_takes_two_or_three_central_sentences_in_order() -> None:
    summary = digest.summarise(SEED_LIKE)
    parts = digest.sentences(summary)
    assert 2 <= len(parts) <= 3
    assert parts[0].startswith("Russian President Vladimir Putin said on Thursday")
    assert "“We will see,”" not in summary  # a bare quote is not a summary
    assert len(summary) <= digest.SUMMARY_MAX_CHARS
    assert all(p in " ".join(SEED_LIKE) for p in parts)  # extractive: words of the reports


def test_summary_of_markup_is_plain_text() -> None:
    text = "<p>The <b>council</b> voted on Tuesday to close the old bridge to all traffic.</p>"
    assert (
        digest.summarise([text])
        == "The council voted on Tuesday to close the old bridge to all traffic."
    )


def test_sentences_keep_initials_and_titles_together() -> None:
    text = "Dr. Jane Smith met U.S. officials on Monday. They agreed on a plan."
    assert digest.sentences(text) == [
        "Dr. Jane Smith met U.S. officials on Monday.",
        "They agreed on a plan.",
    ]


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> Bridge closes'


def _page() -> DigestPage:
    return DigestPage(
        day=date(2025, 12, 4),
        timezone="Europe/Paris",
        unsubscribe_url="https://news.example/unsubscribe?token=a.b",
        site_url="https://news.example/",
        recipient="reader@example.org",
    )


def test_an_outlet_whose_report_has_no_link_is_named_without_one() -> None:
    story = CandidateStory(
        id=1,
        headline="Wire bulletin: strike wounds six",
        last_seen=NOW,
        article_count=2,
        outlets=(Outlet(1, "Wire", ""), Outlet(2, "Paper", "https://paper.example/a")),
        outlet_count=2,
    )
    rendered = digest.render_digest([digest.digest_story(story, [])], _page())
    assert "\nWire, \n" in rendered.html and "  - Wire\n  - Paper: https" in rendered.text
    assert 'href=""' not in rendered.html and "https://paper.example/a" in rendered.html


def test_rendering_escapes_feed_text_and_drops_unsafe_links() -> None:
    story = CandidateStory(
        id=1,
        headline=HOSTILE,
        last_seen=NOW,
        article_count=2,
        outlets=(
            Outlet(1, 'Evil "Outlet" <b>', "javascript:alert(1)"),
            Outlet(2, "Good Outlet", "https://good.example/a?x=1&y=2"),
        ),
        outlet_count=2,
    )
    summary_text = "A <script>steal()</script> sentence that is long enough to be a summary here."
    rendered = digest.render_digest([digest.digest_story(story, [summary_text])], _page())
    assert "<script" not in rendered.html and "onerror=" not in rendered.html.replace("&", "")
    assert "&lt;script&gt;" in rendered.html or "steal()" in rendered.html
    assert "javascript:" not in rendered.html and "javascript:" not in rendered.text
    assert 'href="https://good.example/a?x=1&amp;y=2"' in rendered.html
    assert (
        "Thursday, 4 December 2025" in rendered.html
        and "Thursday, 4 December 2025" in rendered.text
    )
    assert "https://news.example/unsubscribe?token=a.b" in rendered.text
    assert "\n" not in rendered.subject and rendered.subject.startswith(
        "Your news digest for Thursday 4 December: "
    )


def test_subject_is_one_bounded_line() -> None:
    story = digest.DigestStory(1, "A\r\nBcc: victim@example.org " + "x" * 300, "", 1, (), "")
    subject = digest.digest_subject([story], date(2025, 12, 4))
    assert "\r" not in subject and "\n" not in subject
    assert len(subject) <= digest.SUBJECT_MAX_CHARS


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://a.example/x", True),
        ("http://a.example", True),
        ("javascript:alert(1)", False),
        ("data:text/html,<b>", False),
        ("//a.example/x", False),
        ("https:///nohost", False),
        ("http://[::1", False),
    ],
)
def test_only_http_links_are_safe(url: str, safe: bool) -> None:
    assert digest.safe_link(url) is safe


def test_tokens_are_signed_for_one_purpose() -> None:
    token = sign_token({"s": 1, "e": "a@x.example"}, secret="k1", purpose="unsubscribe")
    assert read_token(token, secret="k1", purpose="unsubscribe") == {"s": 1, "e": "a@x.example"}
    for secret, purpose in (("k2", "unsubscribe"), ("k1", "confirm")):
        with pytest.raises(BadToken):
            read_token(token, secret=secret, purpose=purpose)
    body, signature = token.split(".")
    forged = sign_token({"s": 2, "e": "a@x.example"}, secret="k1", purpose="x").split(".")[0]
    for bad in (f"{forged}.{signature}", body, "", "a.b.c", f"{body}.{signature[:-2]}"):
        with pytest.raises(BadToken):
            read_token(bad, secret="k1", purpose="unsubscribe")


def test_tokens_with_an_issue_time_expire() -> None:
    token = sign_token({"t": int(NOW.timestamp())}, secret="k", purpose="confirm")
    age = timedelta(hours=48)
    assert read_token(token, secret="k", purpose="confirm", max_age=age, now=NOW + age)
    with pytest.raises(BadToken, match="expired"):
        read_token(token, secret="k", purpose="confirm", max_age=age, now=NOW + age * 2)


def test_no_secret_no_token() -> None:
    with pytest.raises(ValueError, match="secret"):
        sign_token({}, secret="", purpose="unsubscribe")
