import pytest

from workers.tasks import LONGEST_RETRY_COUNTDOWN, fetch_retry_countdown


@pytest.mark.parametrize(
    ("asked", "retries", "expected"),
    [
        (None, 0, 30.0),
        (None, 2, 120.0),
        (0.0, 1, 60.0),  # "Retry-After: 0" or a date in the past: the usual back-off
        (90.0, 5, 90.0),  # what the server asked for
        (86_400.0, 0, LONGEST_RETRY_COUNTDOWN),  # a day: capped below the broker's redelivery
        (None, 10**6, LONGEST_RETRY_COUNTDOWN),  # a huge retry budget never overflows
    ],
)
def test_fetch_retry_countdown(asked: float | None, retries: int, expected: float) -> None:
    assert fetch_retry_countdown(asked, retries) == expected
