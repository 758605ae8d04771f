"""When to poll a source next: pure arithmetic over the outcome of its last poll."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_BACKOFF = timedelta(days=7)


@dataclass(frozen=True)
class PollBounds:
    minimum: timedelta
    maximum: timedelta


def next_poll_at(
    now: datetime,
    *,
    bounds: PollBounds,
    consecutive_errors: int = 0,
    server_hint: timedelta | None = None,
    jitter: float = 0.0,
) -> datetime:
    """The next poll time: the minimum interval (never below the server's hint), or an
    exponential back-off after errors; `jitter` (0-0.25, drawn by the caller) spreads load."""
    if consecutive_errors > 0:
        interval = min(bounds.minimum * 2 ** min(consecutive_errors - 1, 20), MAX_BACKOFF)
    else:
        interval = max(bounds.minimum, server_hint or timedelta(0))
        interval = min(interval, bounds.maximum)
    scheduled: datetime = now + interval * (1.0 + jitter)
    return scheduled
