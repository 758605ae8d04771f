from datetime import UTC, datetime, timedelta

import pytest

from aggregator.schedule import PollBounds, next_poll_at

NOW = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)
BOUNDS = PollBounds(timedelta(minutes=15), timedelta(hours=24))


@pytest.mark.parametrize(
    ("errors", "hint", "jitter", "expected"),
    [
        (0, None, 0.0, timedelta(minutes=15)),
        (0, None, 0.2, timedelta(minutes=18)),
        (0, timedelta(hours=2), 0.0, timedelta(hours=2)),
        (0, timedelta(days=3), 0.0, timedelta(hours=24)),
        (1, None, 0.0, timedelta(minutes=15)),
        (3, None, 0.0, timedelta(hours=1)),
        (30, None, 0.0, timedelta(days=7)),
    ],
)
def test_next_poll_at(
    errors: int, hint: timedelta | None, jitter: float, expected: timedelta
) -> None:
    got = next_poll_at(
        NOW, bounds=BOUNDS, consecutive_errors=errors, server_hint=hint, jitter=jitter
    )
    assert got - NOW == expected
