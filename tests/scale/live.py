"""A live deployment for the fault tests: Celery worker and beat processes (tests.scale.worker_app)
on a throwaway Redis and PostgreSQL, crawling the demo corpus plus a gate site whose one page
holds its answer until the test lets it go (so a fault can strike while a task is mid-flight)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis
from celery import Celery
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from aggregator import store
from aggregator.db import session_scope
from aggregator.dedup import LSH_BANDS
from aggregator.metrics import pairwise_scores
from aggregator.models import Article, ArticleBand, ClusterTerm, ExtractionStatus, Story
from aggregator.queues import redis_backlog
from aggregator.store import DOCUMENT_COUNT_TERM
from aggregator.urls import canonical_url
from tests.conftest import REPO, rabbitmq_messages
from tests.scale.servers import stop_process, wait_for

QUEUES = ("polling", "fetching", "clustering")
WITHOUT_STORY = {ExtractionStatus.FAILED.value, ExtractionStatus.BOILERPLATE.value}

# ---------------------------------------------------------------- the gate site

GATE_FEEDS = {"/feed.xml": ("gated", "open"), "/late.xml": ("late-1", "late-2")}
TOPICS = {
    "gated": "Glacier railway tunnel under the Sentinel Pass opens after eleven years of digging",
    "open": "Coastal town of Marrowby votes to rebuild its storm-wrecked wooden pier",
    "late-1": "Beekeepers in the Ostvald valley report record honey harvest after mild spring",
    "late-2": "Chess prodigy from Tarnhill wins the national junior title at fourteen",
}


def gate_page(slug: str) -> bytes:
    title = TOPICS[slug]
    sentence = f"{title}, officials and residents said on Thursday. "
    paragraphs = "".join(
        f"<p>{sentence * 3} Paragraph {i} of the report on {slug}.</p>" for i in range(4)
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><article><h1>{title}</h1>{paragraphs}</article></body></html>"
    ).encode()


def gate_feed(origin: str, slugs: tuple[str, ...]) -> bytes:
    now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    items = "".join(
        f"<item><guid>{s}</guid><title>{TOPICS[s]}</title><link>{origin}/a/{s}</link>"
        f"<pubDate>{now}</pubDate><description>{TOPICS[s]}.</description></item>"
        for s in slugs
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Gate</title>{items}</channel></rss>'.encode()


@dataclass
class GateSite:
    """127.0.0.31: feeds /feed.xml and /late.xml and their pages; the `gated` path (the page
    /a/gated unless changed) answers only once released."""

    port: int = 0
    gated: str = "/a/gated"
    release: threading.Event = field(default_factory=threading.Event)
    hits: list[str] = field(default_factory=list)
    gated_requests: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.31:{self.port}"

    def article_urls(self, feed: str) -> list[str]:
        return [f"{self.origin}/a/{slug}" for slug in GATE_FEEDS[feed]]

    def wait_gated(self, count: int, timeout: float = 60) -> None:
        """Until the gated path has been asked for `count` times (a task is mid-flight)."""
        with self.lock:
            if not self.lock.wait_for(lambda: self.gated_requests >= count, timeout):
                raise TimeoutError(f"gated page asked {self.gated_requests} times, not {count}")

    def answer(self, path: str) -> tuple[int, bytes]:
        with self.lock:
            self.hits.append(path)
            if path == self.gated:
                self.gated_requests += 1
                self.lock.notify_all()
        if path == self.gated:
            self.release.wait(timeout=90)
        if path in GATE_FEEDS:
            return 200, gate_feed(self.origin, GATE_FEEDS[path])
        if path.startswith("/a/") and path[3:] in TOPICS:
            return 200, gate_page(path[3:])
        return 404, b"not found"


@contextmanager
def serve_gate() -> Iterator[GateSite]:
    site = GateSite()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = site.answer(self.path)
            with suppress(OSError):  # the worker that asked may have been killed meanwhile
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.31", 0), Handler)
    server.daemon_threads = True
    site.port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield site
    finally:
        site.release.set()
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- processes


@dataclass
class LiveCluster:
    folder: Path
    database_url: str
    broker_url: str
    engine: Engine
    gate: GateSite
    redis_url: str = ""  # AGGREGATOR_REDIS_URL, for the shared counts beside a RabbitMQ broker
    rabbitmq_node: str = ""  # the broker's node when it is not the local RabbitMQ
    expected: set[str] = field(default_factory=set)  # article URLs the crawl must end with
    gold: dict[str, str] = field(default_factory=dict)  # demo article URL -> gold story
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
        return (
            env
            | extra
            | {
                "AGGREGATOR_DATA_DIR": str(self.folder / "data"),
                "AGGREGATOR_DATABASE_URL": self.database_url,
                "AGGREGATOR_BROKER_URL": self.broker_url,
                "AGGREGATOR_REDIS_URL": self.redis_url,
                "AGGREGATOR_FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
                # A request slot whose release a Redis outage swallowed stays taken until it
                # expires (fetch timeout + 30 s): more slots per host, and a busy host is tried
                # again after 5 s, not a minute, so a test's crawl ends within its time.
                "AGGREGATOR_HOST_MAX_CONCURRENT": "8",
                "AGGREGATOR_POLL_DEFER_SECONDS": "5",
                "AGGREGATOR_CLUSTER_SETTLE_SECONDS": "1",
                "AGGREGATOR_CLUSTER_MAX_WAIT_SECONDS": "30",
            }
        )

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "celery", "-A", "tests.scale.worker_app", *args]
        with (self.folder / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def start_worker(
        self, name: str, *, concurrency: int = 2, env: Mapping[str, str] | None = None
    ) -> None:
        args = ["worker", "-Q", ",".join(QUEUES), "-c", str(concurrency), "-n", f"{name}@%h"]
        self._start(name, [*args, "--loglevel", "INFO"], self.env(**(env or {})))

    def start_beat(self, name: str = "beat", **env: str) -> None:
        schedule = str(self.folder / "beat-schedule")
        self._start(name, ["beat", "-s", schedule, "--loglevel", "INFO"], self.env(**env))

    def wait_ready(self, *names: str, timeout: float = 60) -> None:
        for name in names:
            mark = "beat: Starting" if name.startswith("beat") else f"{name}@"

            def ready(name: str = name, mark: str = mark) -> bool:
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:]}")
                log = self.log(name)
                return mark in log and ("ready." in log or name.startswith("beat"))

            wait_for(ready, timeout=timeout, what=name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the worker and its pool) and reap it."""
        stop_process(self.processes.pop(name), sig, wait=30)

    def kill_worker_mid_fetch(self, name: str) -> str:
        """Start a worker and the crawl, and SIGKILL the worker (and its pool: nothing is acked
        or rejected) while it fetches the gated page. Returns the id of that fetch's task."""
        self.start_worker(name)
        self.wait_ready(name)
        self.kick()
        self.gate.wait_gated(1)
        running = self.gated_fetch_task(name)
        self.kill(name)
        return running

    def crawl_through_broker_outage(
        self,
        stop: Callable[[], None],
        start: Callable[[], None],
        *,
        worker_env: dict[str, str] | None = None,
        beat_env: dict[str, str] | None = None,
    ) -> None:
        """Two workers and beat crawl; the broker stops (``stop``) while the gate feed's poll is
        mid-flight and starts again (``start``) 3 s later. A feed registered after that is
        polled only if beat and a worker came back."""
        self.gate.gated = "/feed.xml"
        self.start_worker("w1", env=worker_env)
        self.start_worker("w2", env=worker_env)
        self.start_beat(**(beat_env or {}))
        self.wait_ready("w1", "w2", "beat")
        self.gate.wait_gated(1)  # beat's tick started the crawl; the gate feed's poll waits
        stop()
        self.gate.release.set()  # the poll stores its entries, then finds no broker for them
        time.sleep(3)
        start()
        self.add_late_feed()

    def gated_fetch_task(self, worker: str) -> str:
        """The id of the fetch task that asked the worker for the gated page (the one running)."""
        url = self.gate.origin + self.gate.gated
        with self.session() as session:
            article_id = session.exec(select(Article.id).where(Article.url == url)).one()
        received = re.compile(
            rf'fetch_article\[([^\]]+)\] received", "data": {{[^}}]*"args": "\({article_id},\)"'
        )
        found = received.search(self.log(worker))
        assert found is not None, "the gated fetch's task is not in the worker's log"
        return found.group(1)

    def pool_children(self, name: str) -> list[int]:
        parent = self.processes[name].pid
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        return [int(pid) for pid in children]

    def kick(self) -> None:
        client = Celery("kick", broker=self.broker_url)
        client.send_task("workers.tasks.schedule_due_feeds", queue="polling")
        client.close()

    def add_sources(self, urls: dict[str, str]) -> None:
        with self.session() as session:
            for url, title in urls.items():
                store.add_source(session=session, url=url, title=title, now=datetime.now(UTC))

    def add_late_feed(self) -> None:
        """A feed registered now: only a scheduler tick from now on can poll it."""
        self.add_sources({self.gate.origin + "/late.xml": "Gate, late"})
        self.expected |= set(self.gate.article_urls("/late.xml"))

    def session(self) -> AbstractContextManager[Session]:
        return session_scope(self.engine)

    def backlog(self) -> int:
        if self.broker_url.startswith("amqp://"):
            return rabbitmq_messages(self.broker_url, node=self.rabbitmq_node)
        client = redis.Redis.from_url(self.broker_url)
        try:
            return redis_backlog(client)
        finally:
            client.close()

    def unfinished(self) -> int:
        with self.session() as session:
            rows = session.exec(
                select(Article.url, Article.extraction_status, Article.story_id)
            ).all()
        stored = {url for url, _, _ in rows}
        waiting = [u for u, status, story in rows if story is None and status not in WITHOUT_STORY]
        return len(self.expected - stored) + len(waiting)

    def wait_done(self, timeout: float = 60) -> None:
        """Every expected article stored and in its end state, and nothing queued or unacked
        (twice in a row, a second apart)."""
        deadline = time.monotonic() + timeout
        settled = 0
        while settled < 2:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited:\n{self.log(name)[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not done after {timeout} s: {self.unfinished()} articles unfinished, "
                    f"{self.backlog()} messages queued or unacked\n{self.logs_tail()}"
                )
            settled = settled + 1 if self.unfinished() == 0 and self.backlog() == 0 else 0
            time.sleep(0.5)

    def wait_only_gated_left(self, timeout: float = 60) -> None:
        """Until everything but the gated page's fetch is done, and that fetch is mid-flight."""

        def only_gated() -> bool:
            return self.unfinished() == 1 and self.backlog() == 1

        self.gate.wait_gated(1, timeout)
        wait_for(only_gated, timeout=timeout, what="the crawl but for the gated page")

    def logs_tail(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-2500:]}" for n in sorted(self.processes))

    def close(self) -> None:
        for name in list(self.processes):
            self.kill(name)

    # ------------------------------------------------------------ the end state

    def assert_consistent(self) -> None:
        """Nothing lost, nothing duplicated, nothing half-written."""
        with self.session() as session:
            articles = session.exec(select(Article)).all()
            stories = session.exec(select(Story)).all()
            bands = dict(
                session.exec(
                    select(ArticleBand.article_id, func.count()).group_by(
                        col(ArticleBand.article_id)
                    )
                ).all()
            )
            documents = session.get(ClusterTerm, DOCUMENT_COUNT_TERM)
        canonical = [a.canonical_url for a in articles]
        assert sorted(canonical) == sorted({canonical_url(u) for u in self.expected})
        assert [a.url for a in articles if a.extraction_status == "pending"] == []
        unclustered = [
            a.url
            for a in articles
            if a.story_id is None and a.extraction_status not in WITHOUT_STORY
        ]
        assert unclustered == []
        per_story: dict[int, int] = {}
        for article in articles:
            if article.story_id is not None:
                per_story[article.story_id] = per_story.get(article.story_id, 0) + 1
        live = {s.id: s.article_count for s in stories if s.merged_into_id is None}
        assert live == per_story  # every story's count is its articles', and none is empty
        clustered = [a for a in articles if a.story_id is not None and a.duplicate_of_id is None]
        assert documents is not None and documents.document_count == len(clustered)
        hashed = {a.id for a in articles if a.minhash is not None}
        assert bands == dict.fromkeys(hashed, LSH_BANDS)
        for article in articles:
            if article.extraction_status == "extracted":
                assert article.text and article.content_hash and article.fetched_at
        predicted = {a.url: str(a.story_id) for a in articles if a.story_id is not None}
        assert pairwise_scores(self.gold, predicted).f1 >= 0.9
