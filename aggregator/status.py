"""`aggregator status`: what an operator checks first. Queries at the top, a pure formatter
below."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from aggregator.models import Article, Source, Story

DELAY_SAMPLE = 10_000  # the most recent articles the delay percentiles are taken over


@dataclass(frozen=True)
class Status:
    sources_by_health: dict[str, int]
    articles: dict[str, int]  # stored in the last hour / day
    stories: dict[str, int]  # first seen in the last hour / day
    delay_seconds: dict[str, float | None]  # p50 / p95 of publication-to-storage, last day
    queues: dict[str, int] = field(default_factory=dict)


def collect_status(*, session: Session, now: datetime, queues: dict[str, int]) -> Status:
    windows = {"hour": now - timedelta(hours=1), "day": now - timedelta(days=1)}
    health = session.exec(select(Source.health, func.count()).group_by(col(Source.health))).all()
    return Status(
        sources_by_health={name: int(count) for name, count in health},
        articles={
            k: _count_since(session, col(Article.discovered_at), v) for k, v in windows.items()
        },
        stories={k: _count_since(session, col(Story.first_seen), v) for k, v in windows.items()},
        delay_seconds=_delay_percentiles(_recent_delays(session, windows["day"])),
        queues=queues,
    )


def _count_since(session: Session, column: Mapped[datetime], since: datetime) -> int:
    return int(session.exec(select(func.count()).where(column >= since)).one())


def _recent_delays(session: Session, since: datetime) -> list[float]:
    query = (
        select(Article.published_at, Article.discovered_at)
        .where(col(Article.discovered_at) >= since, col(Article.published_at).is_not(None))
        .order_by(col(Article.discovered_at).desc())
        .limit(DELAY_SAMPLE)
    )
    return [
        max(0.0, (stored - published).total_seconds())
        for published, stored in session.exec(query)
        if published is not None
    ]


def _delay_percentiles(delays: Sequence[float]) -> dict[str, float | None]:
    return {"p50": percentile(delays, 50), "p95": percentile(delays, 95)}


def percentile(values: Sequence[float], rank: float) -> float | None:
    """The nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, -(-len(ordered) * rank // 100) - 1))
    return ordered[int(index)]


def format_status(status: Status) -> str:
    lines = ["sources by health:"]
    lines += [f"  {name:<12} {n}" for name, n in sorted(status.sources_by_health.items())] or [
        "  (none)"
    ]
    lines.append("queues:")
    lines += [f"  {name:<12} {n}" for name, n in status.queues.items()] or [
        "  (broker unreachable)"
    ]
    lines.append(
        f"articles stored:  {status.articles['hour']} last hour, {status.articles['day']} last day"
    )
    lines.append(
        f"stories started:  {status.stories['hour']} last hour, {status.stories['day']} last day"
    )
    p50, p95 = (_duration(status.delay_seconds[p]) for p in ("p50", "p95"))
    lines.append(f"publication to storage, last day: p50 {p50}, p95 {p95}")
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
