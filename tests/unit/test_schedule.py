from datetime import UTC, datetime, timedelta

import pytest

from aggregator.schedule import (
    LONGEST_HINT,
    PollBounds,
    next_poll_at,
    retry_after,
    server_hint,
)

NOW = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)
BOUNDS = PollBounds(timedelta(minutes=15), timedelta(hours=24))
H, M, D = timedelta(hours=1), timedelta(minutes=1), timedelta(days=1)


@pytest.mark.parametrize(
    ("entries", "errors", "hint", "jitter", "expected"),
    [
        (None, 0, None, 0.0, 15 * M),  # never polled: the minimum
        (None, 0, None, 0.2, 18 * M),  # jitter stretches the interval
        (7, 0, None, 0.0, D),  # one entry a day: daily
        (168, 0, None, 0.0, H),  # one an hour: hourly
        (10_000, 0, None, 0.0, 15 * M),  # clamped to the minimum
        (0, 0, None, 0.0, D),  # silent for a week: the maximum
        (1, 0, None, 0.0, D),  # a week / 1 is clamped to the maximum
        (168, 0, 2 * H, 0.0, 2 * H),  # the server's hint is never undercut
        (168, 0, 30 * M, 0.0, H),  # a shorter hint does not speed us up
        (168, 0, 3 * D, 0.0, 3 * D),  # the hint wins over the maximum
        (168, 0, 30 * D, 0.0, 7 * D),  # … up to a week
        (None, 1, None, 0.0, 15 * M),  # errors back off exponentially
        (None, 3, None, 0.0, H),
        (None, 30, None, 0.0, 7 * D),  # up to 7 days
        (None, 500, None, 0.0, 7 * D),
        (None, 2, 2 * H, 0.0, 2 * H),  # Retry-After longer than the back-off wins
        (None, 3, None, 0.25, 75 * M),
    ],
)
def test_next_poll_at(
    entries: int | None,
    errors: int,
    hint: timedelta | None,
    jitter: float,
    expected: timedelta,
) -> None:
    got = next_poll_at(
        NOW,
        bounds=BOUNDS,
        entries_last_week=entries,
        consecutive_errors=errors,
        server_hint=hint,
        jitter=jitter,
    )
    assert got - NOW == expected


@pytest.mark.parametrize(
    ("headers", "ttl", "expected"),
    [
        ({}, None, None),
        ({}, 60, H),
        ({"cache-control": "public, max-age=1800"}, None, 30 * M),
        ({"cache-control": "no-cache, max-age=1800"}, None, None),
        ({"expires": "Thu, 04 Dec 2025 14:00:00 GMT"}, None, 2 * H),
        ({"expires": "Thu, 04 Dec 2025 10:00:00 GMT"}, None, None),  # in the past
        ({"expires": "0"}, None, None),
        ({"retry-after": "120"}, None, 2 * M),
        ({"retry-after": "Thu, 04 Dec 2025 15:00:00 GMT"}, None, 3 * H),
        ({"cache-control": "max-age=60", "retry-after": "7200"}, 30, 2 * H),  # the longest
        # hostile values: a year at most, never an overflow or a crash
        ({"retry-after": "99999999999999999999"}, None, LONGEST_HINT),
        ({"cache-control": "max-age=99999999999999999999"}, None, LONGEST_HINT),
        ({"cache-control": "max-age=²"}, None, None),
        ({"retry-after": "³"}, 10**30, LONGEST_HINT),
    ],
)
def test_server_hint(headers: dict[str, str], ttl: int | None, expected: timedelta | None) -> None:
    assert server_hint(headers, now=NOW, ttl_minutes=ttl) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("", None), ("junk", None), (" 30 ", timedelta(seconds=30))]
)
def test_retry_after(value: str, expected: timedelta | None) -> None:
    assert retry_after(value, now=NOW) == expected
