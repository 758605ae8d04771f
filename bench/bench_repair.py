"""Cost of one story repair pass (beat runs it every 30 minutes) on a store of real stories.

python bench/bench_repair.py ../shared/data/clustering [--file gva_dev] [--rounds 3]

A labelled dev file is streamed through the production clustering stage into a temporary SQLite
store (no repair while it streams). Then repair passes run at 30 minutes after its last article,
over the latest `cluster_repair_max_stories` (500) stories, as beat's would after a quiet
spell. Each pass runs on a fresh copy of that store and is timed twice:
- the first pass, which finds the regrouping, splits, merges and lone-article moves and makes
  them;
- a second pass right after it, which finds nothing: what beat pays every 30 minutes while
  nothing changes.
The baseline, in the same process and on the same copies, is the pass without its two model
steps: regrouping (which scores every recent article against its candidates, see
clustering/regroup.py) and the lone-article step (which asks the model about every one-article
story). The pass is also timed with the lone-article step alone. Not a test: it prints figures.
Quote them with the machine (2 cores here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from aggregator import pipeline, store
from aggregator.cluster_eval import article_for_row
from aggregator.clustering.evaluate import parse_published, stream_order
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.settings import Settings

EPOCH = datetime(2000, 1, 1).astimezone()


def fill_store(rows: list[dict[str, Any]], settings: Settings) -> datetime:
    """Stream the rows through the clustering stage; returns the last article's time."""
    engine = make_engine(settings.effective_database_url)
    upgrade_database(engine)
    sources: dict[str, int] = {}
    last = EPOCH
    for row in stream_order(rows):
        published = parse_published(row.get("published")) or EPOCH
        last = max(last, published)
        with session_scope(engine) as session:
            outlet = str(row.get("source") or "") or f"unknown outlet of {row['id']}"
            if outlet not in sources:
                source, _ = store.add_source(
                    session=session,
                    url=f"https://source-{len(sources)}.invalid/feed",
                    title=outlet,
                    now=EPOCH,
                )
                sources[outlet] = source.id or 0
            article = article_for_row(row, sources[outlet])
            session.add(article)
            session.flush()
            pipeline.cluster_article(
                article.id or 0, session=session, settings=settings, now=published
            )
    engine.dispose()
    return last


@contextmanager
def without_lone_article_step() -> Iterator[None]:
    original = pipeline._rejoin_lone_articles
    pipeline._rejoin_lone_articles = lambda *args, **kwargs: []
    try:
        yield
    finally:
        pipeline._rejoin_lone_articles = original


def timed_passes(settings: Settings, now: datetime) -> tuple[float, float, pipeline.RepairReport]:
    """Seconds of a first and a second repair pass on the store, and the first one's report."""
    engine = make_engine(settings.effective_database_url)
    times = []
    reports = []
    for _ in range(2):
        with session_scope(engine) as session:
            started = time.perf_counter()
            reports.append(pipeline.repair_stories(session=session, settings=settings, now=now))
            times.append(time.perf_counter() - started)
    engine.dispose()
    return times[0], times[1], reports[0]


def measure(
    pristine: Path, folder: Path, settings: Settings, now: datetime, rounds: int, name: str
) -> tuple[tuple[list[float], list[float]], pipeline.RepairReport]:
    """Seconds of the first and of the second passes of ``rounds`` rounds, and the last
    round's first report."""
    firsts: list[float] = []
    seconds: list[float] = []
    report = pipeline.RepairReport()
    for round_number in range(rounds):
        copy = folder / f"{name}-{round_number}.db"
        shutil.copy(pristine, copy)
        local = settings.model_copy(update={"database_url": f"sqlite:///{copy}"})
        first, second, report = timed_passes(local, now)
        firsts.append(first)
        seconds.append(second)
    return (firsts, seconds), report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--file", default="gva_dev")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with (args.data_dir / f"{args.file}.jsonl").open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-repair-") as name:
        folder = Path(name)
        pristine = folder / "store.db"
        settings = Settings(_env_file=None, database_url=f"sqlite:///{pristine}", data_dir=folder)
        settings = settings.model_copy(update={"cluster_repair_window_hours": 24.0 * 365 * 50})
        started = time.perf_counter()
        now = fill_store(rows, settings) + pipeline.REPAIR_EVERY
        print(f"{args.file}: {len(rows)} articles stored in {time.perf_counter() - started:.0f} s")
        no_regroup = settings.model_copy(update={"cluster_regroup_max_articles": 0})
        with without_lone_article_step():
            base, _ = measure(pristine, folder, no_regroup, now, args.rounds, "base")
        lone, _ = measure(pristine, folder, no_regroup, now, args.rounds, "lone")
        full, report = measure(pristine, folder, settings, now, args.rounds, "full")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; median of {args.rounds} rounds")
    print(f"stories per pass: the latest {settings.cluster_repair_max_stories}")
    for label, index in (("first pass", 0), ("second pass (nothing to do)", 1)):
        baseline = statistics.median(base[index])
        print(f"{label}: without the model steps {baseline:6.2f} s")
        for name, runs in (("lone-article step", lone), ("lone-article step and regrouping", full)):
            seconds = statistics.median(runs[index])
            print(f"  with the {name:32} {seconds:6.2f} s, ratio {seconds / baseline:.2f}")
    print(
        f"first pass changes: {len(report.regrouped)} articles regrouped, "
        f"{len(report.rejoined)} lone articles moved, {len(report.merged)} merged, "
        f"{len(report.split)} split"
    )


if __name__ == "__main__":
    main()
