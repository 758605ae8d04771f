"""Task outcomes and durations, counted by every worker process in one Redis hash so that the
API's /metrics can serve them for the whole deployment. Kept only when the broker is Redis: the
server-less default has one worker process, whose log says the same."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import redis

STATS_KEY = "aggregator:task_stats"
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class TaskStats:
    """Per (task, outcome): runs, total seconds and cumulative bucket counts (le -> runs)."""

    runs: int = 0
    seconds: float = 0.0
    buckets: dict[float, int] = field(default_factory=dict)


def record_task(client: redis.Redis, *, task: str, outcome: str, seconds: float) -> None:
    """Count one finished run: a single round trip."""
    prefix = f"{task}|{outcome}"
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(STATS_KEY, f"{prefix}|runs", 1)
    pipe.hincrbyfloat(STATS_KEY, f"{prefix}|seconds", seconds)
    for bound in DURATION_BUCKETS:
        if seconds <= bound:
            pipe.hincrby(STATS_KEY, f"{prefix}|le={bound}", 1)
    pipe.execute()


def read_task_stats(client: redis.Redis) -> dict[tuple[str, str], TaskStats]:
    stats: dict[tuple[str, str], TaskStats] = defaultdict(TaskStats)
    for raw_key, raw_value in client.hgetall(STATS_KEY).items():
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        task, outcome, kind = key.rsplit("|", 2)
        entry = stats[(task, outcome)]
        if kind == "runs":
            entry.runs = int(raw_value)
        elif kind == "seconds":
            entry.seconds = float(raw_value)
        elif kind.startswith("le="):
            entry.buckets[float(kind[3:])] = int(raw_value)
    return dict(stats)
