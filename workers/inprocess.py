"""Run the Celery tasks in this process, without a broker: `aggregator crawl` and the demo.

The same task functions run as in a worker; Celery's eager mode executes each follow-up
(`.delay`) at once, so one poll drains the whole pipeline for its source.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import Session

from aggregator import delivery, pipeline, store
from aggregator.db import session_scope, upgrade_database
from aggregator.demo import LOOPBACK_NETWORK, Corpus, serve_corpus
from aggregator.metrics import Scores, bcubed_scores, pairwise_scores
from aggregator.models import Source, Story
from aggregator.settings import Settings
from workers import tasks
from workers.celery_app import app, build_runtime, runtime, use_runtime

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
        with clustering_held() as fetched:
            while batch := _claim_due_sources(skip=polled):
                for source_id, lease in batch:
                    polled.add(source_id)
                    new = int(tasks.poll_feed.delay(source_id, lease.isoformat()).get())
                    new_articles += new
                    if progress is not None:
                        progress(_source(source_id), new)
        for article_id in fetched:  # each first clusters those published before it: in order
            tasks.cluster_article.delay(article_id).get()
    return CrawlReport(len(polled), new_articles)


@contextmanager
def clustering_held() -> Iterator[list[int]]:
    """Within the block, fetched articles are collected instead of clustered."""
    rt = runtime()
    held: list[int] = []
    rt.held_for_clustering = held
    try:
        yield held
    finally:
        rt.held_for_clustering = None


def _claim_due_sources(skip: set[int]) -> list[tuple[int, datetime]]:
    """Claim the due sources except `skip` (polled in this crawl already and due again: their
    lease goes straight back, so the next crawl or worker can poll them)."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        now = datetime.now(UTC)
        claimed = pipeline.schedule_due_feeds(session=session, settings=rt.settings, now=now)
        for source_id, lease in claimed:
            if source_id in skip:
                store.release_source(session=session, source_id=source_id, lease=lease)
        return [(source_id, lease) for source_id, lease in claimed if source_id not in skip]


def _source(source_id: int) -> Source:
    with session_scope(runtime().engine) as session:
        source = session.get(Source, source_id)
        assert source is not None
        return source


# ---------------------------------------------------------------- the offline demo


class StoreNotEmpty(RuntimeError):
    """The demo was pointed at a store that holds data of its own."""


@dataclass(frozen=True)
class DemoReport:
    articles: int
    stories: list[Story]  # widest first
    pairwise: Scores
    bcubed: Scores
    digest_file: Path | None = None  # the demo day's digest as a mail (demo-digest.eml)


def run_demo(settings: Settings, *, reset: bool, progress: Progress | None = None) -> DemoReport:
    """Serve seeds/demo on loopback, register its feeds, crawl them with the real pipeline and
    score the stories against gold.json. Fetches are allowed to loopback only."""
    loopback = ipaddress.ip_network(LOOPBACK_NETWORK)
    settings = settings.model_copy(update={"fetch_allow_networks": [loopback]})
    use_runtime(build_runtime(settings))
    engine = runtime().engine
    upgrade_database(engine)
    corpus = Corpus.load()
    with session_scope(engine) as session:
        _empty_demo_store(session, corpus, reset=reset)
    with serve_corpus(corpus, now=datetime.now(UTC)) as served:
        with session_scope(engine) as session:
            for slug, url in served.feed_urls.items():
                store.add_source(
                    session=session, url=url, title=served.names[slug], now=datetime.now(UTC)
                )
        report = crawl_due_sources(progress=progress)
        gold = served.served_gold(corpus)
    with session_scope(engine) as session:
        predicted = store.story_of_urls(session=session, urls=list(gold))
        stories = sorted(
            store.latest_stories(session=session, limit=1000),
            key=lambda s: (-s.source_count, -s.article_count, s.id or 0),
        )
        message = delivery.demo_digest(session=session, settings=settings, now=datetime.now(UTC))
    digest_file = Path("demo-digest.eml") if message is not None else None
    if message is not None and digest_file is not None:
        digest_file.write_bytes(message.as_bytes())
    return DemoReport(
        report.new_articles,
        stories,
        pairwise_scores(gold, predicted),
        bcubed_scores(gold, predicted),
        digest_file,
    )


def _empty_demo_store(session: Session, corpus: Corpus, *, reset: bool) -> None:
    """Clear a previous demo run; refuse to touch other data unless told to."""
    names = {outlet.name for outlet in corpus.outlets}
    existing = store.list_sources(session=session)
    if not reset and any(source.title not in names for source in existing):
        raise StoreNotEmpty(
            "the store already holds other data: run `aggregator demo --reset` to empty it, "
            "or point AGGREGATOR_DATABASE_URL at another database"
        )
    store.delete_everything(session=session)
