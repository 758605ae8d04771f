"""Fault injection: a real loopback server that misbehaves on purpose, and the real poll.

For each fault: the health the source ends in, nothing stored twice, good entries kept, and the
process (the same Fetcher) goes on working. Storage runs on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from aggregator import pipeline, store
from aggregator.db import session_scope
from aggregator.fetch import Fetcher
from aggregator.models import Article, Source
from aggregator.settings import Settings

NOW = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)
HOST = "127.0.0.21"
Behaviour = Callable[[BaseHTTPRequestHandler], None]


def rss(*items: tuple[str, str, str], extra: str = "", encoding: str = "utf-8") -> bytes:
    """items: (guid, link path, title); an empty guid leaves the <guid> out."""
    body = "".join(
        f"<item>{f'<guid>{g}</guid>' if g else ''}<title>{t}</title>"
        f"<link>http://{HOST}{link}</link><description>About {t}</description></item>"
        for g, link, t in items
    )
    head = f'<?xml version="1.0" encoding="{encoding}"?>'
    return f'{head}<rss version="2.0"><channel><title>Faulty</title>{extra}{body}</channel></rss>'.encode(
        encoding
    )


GOOD = rss(("g1", "/a/1", "First"), ("g2", "/a/2", "Second"))


@dataclass
class FaultyServer:
    port: int = 0
    routes: dict[str, Behaviour] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"


def send(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Behaviour:
    def behave(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return behave


def slow(seconds: float, then: Behaviour) -> Behaviour:
    def behave(h: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        then(h)

    return behave


def hang(h: BaseHTTPRequestHandler) -> None:
    time.sleep(5)


def reset(h: BaseHTTPRequestHandler) -> None:
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.close_connection = True
    h.rfile.close()
    h.wfile.close()
    h.connection.close()  # the last reference: an RST, not a FIN


def endless(pause: float) -> Behaviour:
    """A chunked body that never ends (fast: hits the size cap; slow: the deadline)."""

    def behave(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"<item>" * 1000
        try:
            for _ in range(100_000):
                h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                h.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass

    return behave


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    state = FaultyServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state.hits.append(self.path)
            behave = state.routes.get(self.path)
            if behave is None:
                send(404, b"not here")(self)
            else:
                behave(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer((HOST, 0), Handler)
    httpd.block_on_close = False
    state.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fault_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "fetch_timeout": 1.0,
            "fetch_connect_timeout": 0.5,
            "host_requests_per_minute": 10_000,
        }
    )


@pytest.fixture
def fetcher(fault_settings: Settings) -> Iterator[Fetcher]:
    fetcher = Fetcher(fault_settings)
    yield fetcher
    fetcher.close()


@dataclass
class Poller:
    engine: Engine
    settings: Settings
    fetcher: Fetcher

    def add(self, url: str) -> int:
        with session_scope(self.engine) as session:
            source, _ = store.add_source(session=session, url=url, now=NOW)
            return source.id or 0

    def poll(self, source_id: int, now: datetime = NOW) -> pipeline.PollOutcome:
        with session_scope(self.engine) as session:
            return pipeline.poll_feed(
                source_id, session=session, fetcher=self.fetcher, settings=self.settings, now=now
            )

    def source(self, source_id: int) -> Source:
        with session_scope(self.engine) as session:
            source = session.get(Source, source_id)
            assert source is not None
            return source

    def articles(self) -> list[Article]:
        with session_scope(self.engine) as session:
            return list(session.exec(select(Article).order_by(Article.id)).all())  # type: ignore[arg-type]


@pytest.fixture
def poller(engine: Engine, fault_settings: Settings, fetcher: Fetcher) -> Poller:
    return Poller(engine, fault_settings, fetcher)


def assert_still_works(poller: Poller, server: FaultyServer) -> None:
    """After the fault, the same process polls a good feed as usual."""
    server.routes["/good"] = send(200, GOOD)
    outcome = poller.poll(poller.add(server.url("/good")))
    assert outcome.status == "new" and len(outcome.new_article_ids) in (0, 2)


# ---------------------------------------------------------------- transport faults


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        (hang, "timeout"),
        (slow(3, send(200, GOOD)), "timeout"),
        (reset, "network"),
        (endless(0), "too_large"),
        (endless(0.05), "timeout"),  # a slow drip: the whole-request deadline stops it
        (
            send(200, gzip.compress(b"<rss>" + b" " * 40_000_000), {"Content-Encoding": "gzip"}),
            "too_large",
        ),
    ],
    ids=["hang", "slow", "reset", "endless", "drip", "gzip-bomb"],
)
def test_transport_faults_back_off(
    poller: Poller, server: FaultyServer, behaviour: Behaviour, error: str
) -> None:
    poller.settings = poller.settings.model_copy(update={"fetch_max_feed_bytes": 2_000_000})
    server.routes["/feed"] = behaviour
    source_id = poller.add(server.url("/feed"))
    started = time.monotonic()
    outcome = poller.poll(source_id)
    assert time.monotonic() - started < 3.0  # the deadline is 1 s
    source = poller.source(source_id)
    assert outcome.status == "error" and (source.last_error or "").startswith(error)
    assert source.health == "backing_off" and source.consecutive_errors == 1
    assert source.next_poll_at >= NOW + timedelta(minutes=15)
    assert_still_works(poller, server)


def test_a_slow_answer_within_the_deadline_is_fine(poller: Poller, server: FaultyServer) -> None:
    server.routes["/feed"] = slow(0.3, send(200, GOOD))
    outcome = poller.poll(poller.add(server.url("/feed")))
    assert outcome.status == "new" and len(outcome.new_article_ids) == 2


# ---------------------------------------------------------------- HTTP answers


@pytest.mark.parametrize(
    ("status", "headers", "body", "health"),
    [
        (500, {}, b"oops", "backing_off"),
        (503, {}, b"", "backing_off"),
        (404, {}, b"", "backing_off"),
        (410, {}, b"", "gone"),
        (401, {"WWW-Authenticate": "Basic"}, b"", "blocked"),
        (403, {"cf-mitigated": "challenge"}, b"<title>Just a moment...</title>", "blocked"),
        (403, {}, b"Forbidden", "backing_off"),
    ],
)
def test_error_statuses_set_the_health(
    poller: Poller,
    server: FaultyServer,
    status: int,
    headers: dict[str, str],
    body: bytes,
    health: str,
) -> None:
    server.routes["/feed"] = send(status, body, headers)
    source_id = poller.add(server.url("/feed"))
    for attempt in range(1, 4):
        poller.poll(source_id, now=NOW + timedelta(days=attempt - 1))
        source = poller.source(source_id)
        assert source.health == health and source.consecutive_errors == attempt
        assert source.last_error == f"HTTP {status}"
    assert poller.articles() == []
    assert_still_works(poller, server)


def test_errors_back_off_exponentially_and_go_dead_after_30_days(
    poller: Poller, server: FaultyServer
) -> None:
    server.routes["/feed"] = send(500)
    source_id = poller.add(server.url("/feed"))
    poller.settings = poller.settings.model_copy(update={"poll_jitter": 0.0})
    waits = []
    for day in (0, 1, 2, 29, 30):
        now = NOW + timedelta(days=day)
        poller.poll(source_id, now=now)
        waits.append(poller.source(source_id).next_poll_at - now)
    assert waits[:3] == [timedelta(minutes=15), timedelta(minutes=30), timedelta(hours=1)]
    source = poller.source(source_id)
    assert source.health == "dead" and source.consecutive_errors == 5
    assert source.next_poll_at > NOW  # still retried
    server.routes["/feed"] = send(200, GOOD)
    poller.poll(source_id, now=NOW + timedelta(days=40))
    assert poller.source(source_id).health == "ok"  # and it comes back


def test_429_honours_retry_after(poller: Poller, server: FaultyServer) -> None:
    server.routes["/feed"] = send(429, b"", {"Retry-After": "7200"})
    source_id = poller.add(server.url("/feed"))
    poller.poll(source_id)
    source = poller.source(source_id)
    assert source.health == "backing_off" and source.next_poll_at >= NOW + timedelta(hours=2)


# ---------------------------------------------------------------- redirects


def test_a_permanent_redirect_moves_the_feed_after_three_polls(
    poller: Poller, server: FaultyServer
) -> None:
    server.routes["/old"] = send(301, b"", {"Location": "/mid"})
    server.routes["/mid"] = send(308, b"", {"Location": server.url("/new")})
    server.routes["/new"] = send(200, GOOD)
    source_id = poller.add(server.url("/old"))
    for poll in range(1, 4):
        poller.poll(source_id, now=NOW + timedelta(hours=poll))
        source = poller.source(source_id)
        assert source.health == "ok"
        assert source.url == (server.url("/new") if poll == 3 else server.url("/old"))
    assert len(poller.articles()) == 2


def test_a_temporary_redirect_does_not_move_the_feed(poller: Poller, server: FaultyServer) -> None:
    server.routes["/old"] = send(302, b"", {"Location": "/new"})
    server.routes["/new"] = send(200, GOOD)
    source_id = poller.add(server.url("/old"))
    for poll in range(4):
        poller.poll(source_id, now=NOW + timedelta(hours=poll))
    source = poller.source(source_id)
    assert source.url == server.url("/old") and source.moved_count == 0


def test_an_interrupted_streak_starts_over(poller: Poller, server: FaultyServer) -> None:
    server.routes["/new"] = send(200, GOOD)
    source_id = poller.add(server.url("/old"))
    for poll, status in enumerate([301, 301, 200, 301, 301]):
        server.routes["/old"] = send(status, GOOD, {"Location": "/new"} if status == 301 else {})
        poller.poll(source_id, now=NOW + timedelta(hours=poll))
    source = poller.source(source_id)
    assert source.url == server.url("/old") and source.moved_count == 2


@pytest.mark.parametrize("kind", ["loop", "chain"])
def test_redirect_loops_and_long_chains_fail(
    poller: Poller, server: FaultyServer, kind: str
) -> None:
    if kind == "loop":
        server.routes["/a"] = send(302, b"", {"Location": "/b"})
        server.routes["/b"] = send(301, b"", {"Location": "/a"})
    else:
        for hop in range(10):
            server.routes["/a" if hop == 0 else f"/h{hop}"] = send(
                308, b"", {"Location": f"/h{hop + 1}"}
            )
    source_id = poller.add(server.url("/a"))
    poller.poll(source_id)
    source = poller.source(source_id)
    assert source.health == "backing_off"
    assert (source.last_error or "").startswith("too_many_redirects")
    assert len(server.hits) == 6


# ---------------------------------------------------------------- bodies


def test_malformed_xml_keeps_the_good_entries(poller: Poller, server: FaultyServer) -> None:
    broken = GOOD.replace(b"<title>Second</title>", b"<title>Sec<b>ond &bogus; </title>") + b"<oops"
    server.routes["/feed"] = send(200, broken)
    source_id = poller.add(server.url("/feed"))
    outcome = poller.poll(source_id)
    source = poller.source(source_id)
    assert outcome.status == "new" and len(outcome.new_article_ids) == 2
    assert source.health == "degraded" and (source.last_error or "").startswith("feed recovered")
    assert source.consecutive_errors == 0


def test_not_a_feed_is_an_error(poller: Poller, server: FaultyServer) -> None:
    server.routes["/feed"] = send(
        200, b"<html><body>Hello</body></html>", {"Content-Type": "text/html"}
    )
    source_id = poller.add(server.url("/feed"))
    poller.poll(source_id)
    assert poller.source(source_id).health == "backing_off"


def test_wrong_charsets_are_read_right(poller: Poller, server: FaultyServer) -> None:
    latin = rss(("g1", "/a/1", "Café Zürich"), encoding="utf-8")  # UTF-8 bytes …
    server.routes["/feed"] = send(
        200, latin, {"Content-Type": "application/rss+xml; charset=iso-8859-1"}
    )
    poller.poll(poller.add(server.url("/feed")))
    (article,) = poller.articles()
    assert article.title == "Café Zürich"


def test_duplicate_and_missing_guids_store_each_entry_once(
    poller: Poller, server: FaultyServer
) -> None:
    feed = rss(
        ("dup", "/a/1", "One"),
        ("dup", "/a/2", "Two"),  # the same GUID for two stories
        ("", "/a/3?utm_source=rss", "Three"),  # no GUID
        ("", "/a/3", "Three again"),  # and again, the same page
        ("g5", "/a/5", "Five"),
    )
    server.routes["/feed"] = send(200, feed)
    source_id = poller.add(server.url("/feed"))
    first = poller.poll(source_id)
    second = poller.poll(source_id, now=NOW + timedelta(hours=1))
    articles = poller.articles()
    assert len(first.new_article_ids) == 4 and second.new_article_ids == []
    assert sorted(a.canonical_url.rsplit("/", 1)[1] for a in articles) == ["1", "2", "3", "5"]


def test_an_entry_updated_in_place_updates_the_article(
    poller: Poller, server: FaultyServer
) -> None:
    server.routes["/feed"] = send(200, rss(("g1", "/a/1", "Draft title"), ("g2", "/a/2", "Other")))
    source_id = poller.add(server.url("/feed"))
    poller.poll(source_id)
    server.routes["/feed"] = send(200, rss(("g1", "/a/1", "Final title"), ("g2", "/a/2", "Other")))
    same_link = poller.poll(source_id, now=NOW + timedelta(hours=1))
    server.routes["/feed"] = send(
        200, rss(("g1", "/a/1-fixed", "Final title"), ("g2", "/a/2", "Other"))
    )
    new_link = poller.poll(source_id, now=NOW + timedelta(hours=2))
    articles = poller.articles()
    assert len(articles) == 2
    assert articles[0].title == "Final title" and articles[0].url.endswith("/a/1-fixed")
    assert same_link.new_article_ids == []  # nothing to re-fetch: the page is the same
    assert new_link.new_article_ids == [articles[0].id]  # a new link: fetch it again
    assert articles[0].extraction_status == "pending"


def test_at_most_max_entries_per_poll(poller: Poller, server: FaultyServer) -> None:
    poller.settings = poller.settings.model_copy(update={"max_entries_per_poll": 5})
    server.routes["/feed"] = send(200, rss(*[(f"g{i}", f"/a/{i}", f"T{i}") for i in range(12)]))
    outcome = poller.poll(poller.add(server.url("/feed")))
    assert len(outcome.new_article_ids) == 5


# ---------------------------------------------------------------- conditional GET


def test_304_costs_no_parse_and_a_full_fetch_comes_every_12_hours(
    poller: Poller, server: FaultyServer
) -> None:
    conditional: list[bool] = []

    def behave(h: BaseHTTPRequestHandler) -> None:
        asked = h.headers.get("If-None-Match") == '"v1"'
        conditional.append(asked)
        # a broken server: 304 whenever asked, although the feed changed
        send(304)(h) if asked else send(200, GOOD, {"ETag": '"v1"'})(h)

    server.routes["/feed"] = behave
    source_id = poller.add(server.url("/feed"))
    outcomes = [poller.poll(source_id, now=NOW + timedelta(hours=h)) for h in (0, 1, 2, 13)]
    assert [o.status for o in outcomes] == ["new", "not_modified", "not_modified", "new"]
    assert conditional == [False, True, True, False]
    assert poller.source(source_id).health == "ok"
