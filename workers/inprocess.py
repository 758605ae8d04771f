"""Run the Celery tasks in this process, without a broker: `aggregator crawl` and the demo.

The same task functions run as in a worker; Celery's eager mode executes each follow-up
(`.delay`) at once, so one poll drains the whole pipeline for its source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from aggregator import pipeline
from aggregator.db import session_scope
from aggregator.models import Source
from workers import tasks
from workers.celery_app import app, runtime

Progress = Callable[[Source, int], None]


@dataclass(frozen=True)
class CrawlReport:
    sources_polled: int
    new_articles: int


@contextmanager
def eager_tasks() -> Iterator[None]:
    """Within the block, task.delay() runs the task here and now."""
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = previous


def crawl_due_sources(progress: Progress | None = None) -> CrawlReport:
    """Poll every source that is due now once, and fetch, extract and cluster what it brings."""
    polled: set[int] = set()
    new_articles = 0
    with eager_tasks():
        while batch := [i for i in _due_source_ids() if i not in polled]:
            for source_id in batch:
                polled.add(source_id)
                new = int(tasks.poll_feed.delay(source_id).get())
                new_articles += new
                if progress is not None:
                    progress(_source(source_id), new)
    return CrawlReport(len(polled), new_articles)


def _due_source_ids() -> list[int]:
    rt = runtime()
    with session_scope(rt.engine) as session:
        return pipeline.due_sources(session=session, settings=rt.settings, now=datetime.now(UTC))


def _source(source_id: int) -> Source:
    with session_scope(runtime().engine) as session:
        source = session.get(Source, source_id)
        assert source is not None
        return source
