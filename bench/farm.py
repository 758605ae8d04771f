"""A feed farm: the labelled NeuS file served as a crowd of news sites on loopback.

Each outlet of ``neus_raw.jsonl`` becomes a site on its own loopback address (127.0.0.2, .3, …)
with one RSS feed (``/feed.xml``, all its entries, newest first, ETag-aware) and one HTML page per
article (``/a/<id>``). Publication dates are shifted so that the newest day of the file is
yesterday: every entry lies in the past, as in a real feed (the service does not believe a date
later than the moment it sees the entry).
A few misbehaving hosts (127.0.1.x) sit beside them: a slow one (its feed answers after seconds,
its pages too, and it carries a few synthetic articles), one that answers 500, one that answers
429 with Retry-After, and one whose feed is malformed XML.

With a Replay, the entries appear in their feeds over some seconds of wall time, in publication
order (the file's oldest day first), each feed showing its newest 100; without, all at once.

The farm knows nothing about the aggregator: it only serves bytes. ``serve_farm`` is a context
manager for benchmarks; ``python bench/farm.py [--feeds N] [--replay S]`` serves until
interrupted and prints the feed URLs.
"""

from __future__ import annotations

import argparse
import html
import json
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "clustering" / "neus_raw.jsonl"
FEED_PATH = "/feed.xml"


@dataclass(frozen=True)
class FarmArticle:
    id: str
    story: str  # the gold label
    title: str
    text: str
    published: datetime


@dataclass(frozen=True)
class FarmOutlet:
    name: str
    articles: list[FarmArticle]  # newest first


# ---------------------------------------------------------------- pure: data to bytes


def load_outlets(path: Path, *, today: date, feeds: int | None = None) -> list[FarmOutlet]:
    """Outlets of the file, largest first (then by name); the first `feeds` of them.
    Each day of the file is moved so that the newest becomes the day before `today` (articles
    spread over the day from 00:00 UTC by a minute per article, so the feed order is stable)."""
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    newest = max(date.fromisoformat(r["published"]) for r in rows if r["published"])
    shift = today - timedelta(days=1) - newest
    by_outlet: dict[str, list[FarmArticle]] = defaultdict(list)
    for index, row in enumerate(rows):
        day = date.fromisoformat(row["published"]) + shift
        moment = datetime(day.year, day.month, day.day, 0, tzinfo=UTC) + timedelta(
            minutes=index % 1440
        )
        article = FarmArticle(row["id"], row["story"], row["title"], row["text"], moment)
        by_outlet[row["source"] or "unknown"].append(article)
    outlets = [
        FarmOutlet(name, sorted(articles, key=lambda a: (a.published, a.id), reverse=True))
        for name, articles in by_outlet.items()
    ]
    outlets.sort(key=lambda o: (-len(o.articles), o.name))
    return outlets[:feeds] if feeds is not None else outlets


def render_page(article: FarmArticle, outlet: str) -> bytes:
    """An article page as news sites write them: navigation, headline, byline, paragraphs."""
    title, name = html.escape(article.title), html.escape(outlet)
    paragraphs = "".join(
        f"<p>{html.escape(p)}</p>" for p in article.text.split("\n\n") if p.strip()
    )
    when = article.published.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} | {name}'
        f'</title><meta property="og:title" content="{title}">'
        f'<meta property="article:published_time" content="{when}"></head><body>'
        f'<header><nav><a href="/">Home</a> <a href="/politics">Politics</a> '
        f'<a href="/world">World</a></nav></header><main><article><h1>{title}</h1>'
        f'<p class="byline">By {name} staff, <time datetime="{when}">{when[:10]}</time></p>'
        f"{paragraphs}</article></main><footer>© {name}. All rights reserved.</footer>"
        "</body></html>"
    ).encode()


def render_feed(outlet: str, entries: Sequence[FarmArticle], origin: str) -> bytes:
    """RSS 2.0 with one item per article: guid, link to its page, date, a summary."""
    items = "".join(
        f'<item><guid isPermaLink="false">{a.id}</guid><title>{html.escape(a.title)}</title>'
        f"<link>{origin}/a/{a.id}</link><pubDate>{format_datetime(a.published)}</pubDate>"
        f"<description>{html.escape(a.text.split(chr(10))[0][:300])}</description></item>"
        for a in entries
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{html.escape(outlet)}</title><link>{origin}/</link>"
        f"<description>Latest from {html.escape(outlet)}</description>{items}</channel></rss>"
    ).encode()


# ---------------------------------------------------------------- serving


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


@dataclass
class LiveFeed:
    """A feed whose entries appear over time: each after its offset (seconds from the start of
    the replay); the feed shows the newest `size` entries that have appeared."""

    outlet: str
    origin: str
    entries: list[tuple[float, FarmArticle]]  # (appears after, article), newest first
    size: int | None
    started: float = field(default_factory=time.monotonic)

    def response(self) -> Response:
        elapsed = time.monotonic() - self.started
        shown = [article for offset, article in self.entries if offset <= elapsed][: self.size]
        body = render_feed(self.outlet, shown, self.origin)
        etag = f'"{zlib.crc32(body):08x}"'
        return Response(200, body, (("Content-Type", "application/rss+xml"), ("ETag", etag)))


@dataclass
class Site:
    """One host of the farm: its routes and what was asked of it."""

    name: str
    routes: dict[str, Response] = field(default_factory=dict)
    feed: LiveFeed | None = None  # serves FEED_PATH when set
    hits: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, if_none_match: str | None) -> Response:
        with self.lock:
            self.hits.append((time.monotonic(), path))
        path = path.split("?", 1)[0]
        if path == FEED_PATH and self.feed is not None:
            response = self.feed.response()
        else:
            response = self.routes.get(path, Response(404, b"not found"))
        etag = dict(response.headers).get("ETag")
        if etag is not None and if_none_match == etag:
            return Response(304, headers=(("ETag", etag),), delay=response.delay)
        return response


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stall per keep-alive answer

        def do_GET(self) -> None:
            response = site.answer(self.path, self.headers.get("If-None-Match"))
            if response.delay:
                time.sleep(response.delay)
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@dataclass(frozen=True)
class SlowHost:
    feed_delay: float = 3.0
    page_delay: float = 1.0
    articles: int = 3


@dataclass(frozen=True)
class Replay:
    """The file's articles appear in their feeds over `seconds` of wall time in publication
    order, its oldest day first and its newest last; seconds=0 shows everything at once. A
    replayed feed shows its newest `feed_size` entries."""

    seconds: float = 0.0
    feed_size: int = 100  # the service reads at most 100 entries a poll (max_entries_per_poll)

    def offsets(self, outlets: Sequence[FarmOutlet]) -> dict[str, float]:
        moments = [a.published for o in outlets for a in o.articles]
        oldest, span = min(moments), (max(moments) - min(moments)).total_seconds()
        return {
            a.id: self.seconds * (a.published - oldest).total_seconds() / span if span else 0.0
            for o in outlets
            for a in o.articles
        }


@dataclass
class Farm:
    """What is served where: feed URL per outlet, gold story per article URL."""

    feed_urls: dict[str, str]  # outlet name -> feed URL (misbehaving hosts included)
    gold: dict[str, str]  # article page URL -> gold story (the file's articles only)
    extra_articles: list[str]  # URLs of the slow host's synthetic articles
    misbehaving: dict[str, str]  # kind ("slow", "error500", "ratelimited", "malformed") -> feed URL
    sites: dict[str, Site]  # outlet name -> its site
    offsets: dict[str, float] = field(default_factory=dict)  # article URL -> appears after (s)
    started: float = 0.0  # wall clock (epoch seconds) of the replay's start

    def hits(self) -> int:
        return sum(len(site.hits) for site in self.sites.values())

    def restart(self) -> None:
        """Start the replay again: every replayed feed is back to its first entries."""
        now = time.monotonic()
        self.started = time.time()
        for site in self.sites.values():
            if site.feed is not None:
                site.feed.started = now

    def appeared_at(self, url: str) -> float:
        """Wall clock at which the article's entry appears in its feed."""
        return self.started + self.offsets.get(url, 0.0)

    def all_appeared(self) -> bool:
        return time.time() >= self.started + max(self.offsets.values(), default=0.0)


def _live_feed(
    outlet: FarmOutlet, origin: str, replay: Replay, offsets: dict[str, float]
) -> LiveFeed:
    entries = [(offsets[a.id], a) for a in outlet.articles]
    return LiveFeed(outlet.name, origin, entries, replay.feed_size if replay.seconds else None)


def _outlet_routes(outlet: FarmOutlet, origin: str) -> dict[str, Response]:
    feed = render_feed(outlet.name, outlet.articles, origin)
    etag = f'"{zlib.crc32(feed):08x}"'
    routes = {
        FEED_PATH: Response(200, feed, (("Content-Type", "application/rss+xml"), ("ETag", etag)))
    }
    for article in outlet.articles:
        page = render_page(article, outlet.name)
        routes[f"/a/{article.id}"] = Response(200, page, (("Content-Type", "text/html"),))
    return routes


def _synthetic(slow: SlowHost, today: date) -> FarmOutlet:
    noon = datetime(today.year, today.month, today.day, tzinfo=UTC)
    articles = [
        FarmArticle(
            f"slow-{i}",
            f"slow-{i}",
            f"Slow Gazette report {i}: county fair reopens after storm repairs",
            f"The county fair reopened on day {i} after storm repairs, organisers said. " * 6,
            noon - timedelta(hours=i),
        )
        for i in range(slow.articles)
    ]
    return FarmOutlet("Slow Gazette", articles)


def _misbehaving_routes(kind: str, origin: str, slow: SlowHost, today: date) -> dict[str, Response]:
    if kind == "slow":
        routes = _outlet_routes(_synthetic(slow, today), origin)
        return {
            path: Response(r.status, r.body, r.headers, slow.page_delay)
            if path != FEED_PATH
            else Response(r.status, r.body, r.headers, slow.feed_delay)
            for path, r in routes.items()
        }
    if kind == "error500":
        return {FEED_PATH: Response(500, b"internal error")}
    if kind == "ratelimited":
        return {FEED_PATH: Response(429, b"slow down", (("Retry-After", "3600"),))}
    malformed = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Broken</title><item>'
    return {FEED_PATH: Response(200, malformed, (("Content-Type", "application/rss+xml"),))}


MISBEHAVING = ("slow", "error500", "ratelimited", "malformed")


def _start(site: Site, address: str) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer((address, 0), _handler(site))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://{address}:{server.server_address[1]}"


@contextmanager
def serve_farm(
    outlets: Sequence[FarmOutlet],
    *,
    today: date,
    misbehaving: bool = True,
    slow: SlowHost | None = None,
    replay: Replay | None = None,
) -> Iterator[Farm]:
    """Serve every outlet on 127.0.0.<2+i> and the misbehaving hosts on 127.0.1.<2+j>; the
    outlets' feeds replay their entries as `replay` says (by default all at once)."""
    replay = replay or Replay()
    offsets = replay.offsets(outlets)
    if len(outlets) > 250:
        raise ValueError("at most 250 outlets (one loopback address each)")
    slow = slow or SlowHost()
    servers: list[ThreadingHTTPServer] = []
    farm = Farm({}, {}, [], {}, {})
    try:
        for i, outlet in enumerate(outlets):
            site = Site(outlet.name)
            server, origin = _start(site, f"127.0.0.{2 + i}")
            servers.append(server)
            site.routes = _outlet_routes(outlet, origin)
            site.feed = _live_feed(outlet, origin, replay, offsets)
            farm.sites[outlet.name] = site
            farm.offsets.update({f"{origin}/a/{a.id}": offsets[a.id] for a in outlet.articles})
            farm.feed_urls[outlet.name] = origin + FEED_PATH
            farm.gold.update({f"{origin}/a/{a.id}": a.story for a in outlet.articles})
        for j, kind in enumerate(MISBEHAVING if misbehaving else ()):
            site = Site(f"misbehaving {kind}")
            server, origin = _start(site, f"127.0.1.{2 + j}")
            servers.append(server)
            site.routes = _misbehaving_routes(kind, origin, slow, today)
            farm.sites[site.name] = site
            farm.feed_urls[site.name] = farm.misbehaving[kind] = origin + FEED_PATH
            if kind == "slow":
                farm.extra_articles = [f"{origin}{p}" for p in site.routes if p != FEED_PATH]
        farm.restart()
        yield farm
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--feeds", type=int, default=None, help="only the N largest outlets")
    parser.add_argument("--replay", type=float, default=0.0, help="seconds; 0: all at once")
    args = parser.parse_args(argv)
    today = datetime.now(UTC).date()
    outlets = load_outlets(args.data, today=today, feeds=args.feeds)
    with serve_farm(outlets, today=today, replay=Replay(args.replay)) as farm:
        for name, url in farm.feed_urls.items():
            print(f"{url}\t{name}")
        print(f"{len(farm.gold)} articles in {len(outlets)} feeds; Ctrl-C stops", flush=True)
        with suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
