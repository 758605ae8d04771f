from datetime import UTC, datetime, timedelta

import pytest

from aggregator.health import (
    ErrorClass,
    FeedMove,
    classify_fetch_error,
    classify_status,
    health_after_error,
    health_after_success,
    is_transient,
    looks_like_bot_challenge,
    permanent_target,
    track_feed_move,
)
from aggregator.models import SourceHealth

NOW = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)
DEAD_AFTER = timedelta(days=30)


@pytest.mark.parametrize(
    ("status", "challenge", "expected"),
    [
        (500, False, ErrorClass.TRANSIENT),
        (503, False, ErrorClass.TRANSIENT),
        (408, False, ErrorClass.TRANSIENT),
        (429, False, ErrorClass.RATE_LIMITED),
        (401, False, ErrorClass.BLOCKED),
        (403, True, ErrorClass.BLOCKED),
        (403, False, ErrorClass.PERMANENT),
        (404, False, ErrorClass.PERMANENT),
        (410, False, ErrorClass.GONE),
    ],
)
def test_classify_status(status: int, challenge: bool, expected: ErrorClass) -> None:
    assert classify_status(status, challenge=challenge) is expected


@pytest.mark.parametrize(
    ("kind", "transient"),
    [
        ("timeout", True),
        ("network", True),
        ("dns", True),
        ("too_large", False),
        ("blocked_address", False),
        ("too_many_redirects", False),
        ("bad_url", False),
    ],
)
def test_fetch_errors_that_are_worth_a_retry(kind: str, transient: bool) -> None:
    assert is_transient(classify_fetch_error(kind)) is transient


@pytest.mark.parametrize(
    ("error", "since_success", "expected"),
    [
        (ErrorClass.TRANSIENT, timedelta(hours=1), SourceHealth.BACKING_OFF),
        (ErrorClass.RATE_LIMITED, timedelta(hours=1), SourceHealth.BACKING_OFF),
        (ErrorClass.PERMANENT, timedelta(days=3), SourceHealth.BACKING_OFF),
        (ErrorClass.BLOCKED, timedelta(hours=1), SourceHealth.BLOCKED),
        (ErrorClass.GONE, timedelta(hours=1), SourceHealth.GONE),
        (ErrorClass.TRANSIENT, timedelta(days=29, hours=23), SourceHealth.BACKING_OFF),
        (ErrorClass.TRANSIENT, timedelta(days=30), SourceHealth.DEAD),
        (ErrorClass.GONE, timedelta(days=45), SourceHealth.DEAD),
    ],
)
def test_health_after_error(
    error: ErrorClass, since_success: timedelta, expected: SourceHealth
) -> None:
    got = health_after_error(
        error, last_success_at=NOW - since_success, now=NOW, dead_after=DEAD_AFTER
    )
    assert got is expected


def test_health_after_success() -> None:
    assert health_after_success(feed_problem=None) is SourceHealth.OK
    assert health_after_success(feed_problem="SAXParseException") is SourceHealth.DEGRADED


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"cf-mitigated": "challenge"}, b"", True),
        ({}, b"<title>Just a moment...</title>", True),
        ({}, b"<div class='g-recaptcha'>captcha</div>", True),
        ({}, b"Forbidden", False),
    ],
)
def test_bot_challenges(headers: dict[str, str], body: bytes, expected: bool) -> None:
    assert looks_like_bot_challenge(headers, body) is expected


@pytest.mark.parametrize(
    ("redirects", "expected"),
    [
        ([], None),
        ([(301, "https://a/2")], "https://a/2"),
        ([(308, "https://a/2"), (301, "https://a/3")], "https://a/3"),
        ([(301, "https://a/2"), (302, "https://a/3")], "https://a/2"),
        ([(302, "https://a/2"), (301, "https://a/3")], None),
    ],
)
def test_permanent_target(redirects: list[tuple[int, str]], expected: str | None) -> None:
    assert permanent_target(redirects) == expected


@pytest.mark.parametrize(
    ("previous", "count", "target", "expected"),
    [
        (None, 0, None, FeedMove(None, 0, None)),
        (None, 0, "https://b/", FeedMove("https://b/", 1, None)),
        ("https://b/", 1, "https://b/", FeedMove("https://b/", 2, None)),
        ("https://b/", 2, "https://b/", FeedMove(None, 0, "https://b/")),  # third in a row
        ("https://b/", 2, None, FeedMove(None, 0, None)),  # streak broken
        ("https://b/", 2, "https://c/", FeedMove("https://c/", 1, None)),  # another target
    ],
)
def test_track_feed_move(
    previous: str | None, count: int, target: str | None, expected: FeedMove
) -> None:
    assert track_feed_move(previous, count, target, confirmations=3) == expected
