"""When to poll a source next: pure arithmetic over the outcome of its last poll."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

WEEK = timedelta(days=7)
# A server's hint is read up to a year: beyond that it means "never" as much as a week does (hints
# are capped at max_backoff anyway), and a hostile "Retry-After: 99999999999999999999" must not
# overflow timedelta.
LONGEST_HINT = timedelta(days=365)
_LONGEST_SECONDS = int(LONGEST_HINT.total_seconds())


@dataclass(frozen=True)
class PollBounds:
    minimum: timedelta
    maximum: timedelta
    max_backoff: timedelta = WEEK  # also caps any server hint


def next_poll_at(
    now: datetime,
    *,
    bounds: PollBounds,
    entries_last_week: int | None = None,
    consecutive_errors: int = 0,
    server_hint: timedelta | None = None,
    jitter: float = 0.0,
) -> datetime:
    """The next poll time: the publishing-rate interval (or an exponential back-off after
    errors), never before the server's hint; `jitter` (drawn by the caller) spreads load."""
    if consecutive_errors > 0:
        interval = backoff_interval(consecutive_errors, bounds=bounds)
    else:
        interval = publishing_interval(entries_last_week, bounds=bounds)
    if server_hint is not None:
        interval = max(interval, min(server_hint, bounds.max_backoff))
    scheduled: datetime = now + interval * (1.0 + jitter)
    return scheduled


def publishing_interval(entries_last_week: int | None, *, bounds: PollBounds) -> timedelta:
    """About a week divided by the entries seen in the last week, within the bounds."""
    if entries_last_week is None:
        return bounds.minimum
    if entries_last_week <= 0:
        return bounds.maximum
    return min(max(WEEK / entries_last_week, bounds.minimum), bounds.maximum)


def backoff_interval(consecutive_errors: int, *, bounds: PollBounds) -> timedelta:
    """The minimum interval doubled per consecutive error, up to the back-off cap."""
    doubled: timedelta = bounds.minimum * 2 ** min(consecutive_errors - 1, 30)
    return min(doubled, bounds.max_backoff)


def server_hint(
    headers: Mapping[str, str], *, now: datetime, ttl_minutes: int | None = None
) -> timedelta | None:
    """The longest wait the server asked for: RSS <ttl>, Cache-Control max-age, Expires,
    Retry-After (headers with lower-case names)."""
    hints = [
        _minutes(ttl_minutes) if ttl_minutes and ttl_minutes > 0 else None,
        _max_age(headers.get("cache-control", "")),
        _until(headers.get("expires", ""), now),
        retry_after(headers.get("retry-after", ""), now=now),
    ]
    present = [hint for hint in hints if hint is not None and hint > timedelta(0)]
    return max(present) if present else None


def retry_after(value: str, *, now: datetime) -> timedelta | None:
    """Retry-After as seconds or an HTTP date."""
    value = value.strip()
    if _is_number(value):
        return _seconds(int(value))
    return _until(value, now)


def _seconds(count: int) -> timedelta:
    return timedelta(seconds=min(count, _LONGEST_SECONDS))


def _minutes(count: int) -> timedelta:
    return _seconds(min(count, _LONGEST_SECONDS) * 60)


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²", which int() rejects."""
    return text.isascii() and text.isdigit()


def _max_age(cache_control: str) -> timedelta | None:
    directives = [part.strip().lower() for part in cache_control.split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return None
    for directive in directives:
        name, _, value = directive.partition("=")
        if name.strip() == "max-age" and _is_number(value.strip()):
            return _seconds(int(value.strip()))
    return None


def _until(http_date: str, now: datetime) -> timedelta | None:
    if not http_date.strip():
        return None
    try:
        moment = parsedate_to_datetime(http_date.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment - now
