"""Feed health: error classification, health transitions and feed moves. Pure decisions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from aggregator.models import SourceHealth

PERMANENT_REDIRECTS = frozenset({301, 308})
TRANSIENT_FETCH_KINDS = frozenset({"timeout", "network", "dns"})
CHALLENGE_MARKERS = (
    b"captcha",
    b"cf-chl",
    b"just a moment",
    b"challenge-platform",
    b"are you a robot",
)


class ErrorClass(StrEnum):
    TRANSIENT = "transient"  # network trouble, 5xx: retry soon, back off
    RATE_LIMITED = "rate_limited"  # 429: wait as long as the server says
    BLOCKED = "blocked"  # 401, or 403 with a bot challenge
    GONE = "gone"  # 410
    PERMANENT = "permanent"  # anything else that a retry will not fix by itself


def classify_fetch_error(kind: str) -> ErrorClass:
    """An error raised before any HTTP answer (fetch.FetchErrorKind values)."""
    return ErrorClass.TRANSIENT if kind in TRANSIENT_FETCH_KINDS else ErrorClass.PERMANENT


def classify_status(status: int, *, challenge: bool = False) -> ErrorClass:
    """An HTTP answer that is not a success."""
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status == 401 or (status == 403 and challenge):
        return ErrorClass.BLOCKED
    if status == 410:
        return ErrorClass.GONE
    if status >= 500 or status == 408:
        return ErrorClass.TRANSIENT
    return ErrorClass.PERMANENT


def is_transient(error: ErrorClass) -> bool:
    """Worth an immediate task retry (with back-off)."""
    return error in (ErrorClass.TRANSIENT, ErrorClass.RATE_LIMITED)


def looks_like_bot_challenge(headers: Mapping[str, str], body: bytes) -> bool:
    """A 403 from an anti-bot wall rather than a plain refusal."""
    if headers.get("cf-mitigated", "").lower() == "challenge":
        return True
    head = body[:20_000].lower()
    return any(marker in head for marker in CHALLENGE_MARKERS)


def health_after_error(
    error: ErrorClass, *, last_success_at: datetime, now: datetime, dead_after: timedelta
) -> SourceHealth:
    """Dead after `dead_after` without a success; else what the error says."""
    if now - last_success_at >= dead_after:
        return SourceHealth.DEAD
    if error is ErrorClass.BLOCKED:
        return SourceHealth.BLOCKED
    if error is ErrorClass.GONE:
        return SourceHealth.GONE
    return SourceHealth.BACKING_OFF


def health_after_success(*, feed_problem: str | None) -> SourceHealth:
    """A feed that had to be recovered from malformed XML is degraded, not failed."""
    return SourceHealth.DEGRADED if feed_problem else SourceHealth.OK


@dataclass(frozen=True)
class FeedMove:
    moved_to_url: str | None
    moved_count: int
    new_url: str | None  # set when the move is confirmed


def permanent_target(redirects: Sequence[tuple[int, str]]) -> str | None:
    """Where the leading run of permanent redirects (301/308) points, if any."""
    target = None
    for status, url in redirects:
        if status not in PERMANENT_REDIRECTS:
            break
        target = url
    return target


def track_feed_move(
    previous_target: str | None, previous_count: int, target: str | None, *, confirmations: int
) -> FeedMove:
    """Count a permanent redirect seen on consecutive polls; confirm it after `confirmations`."""
    if target is None:
        return FeedMove(None, 0, None)
    count = previous_count + 1 if target == previous_target else 1
    if count >= confirmations:
        return FeedMove(None, 0, target)
    return FeedMove(target, count, None)
