"""The offline demo: serve the corpus in seeds/demo on loopback, one address per outlet, with its
dates shifted so that the newest article is from the current hour."""

from __future__ import annotations

import json
import re
import threading
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

DEMO_DIR = Path(__file__).resolve().parent.parent / "seeds" / "demo"
LOOPBACK_NETWORK = "127.0.0.0/8"
_RFC822 = re.compile(rb"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}")
_RFC3339 = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})")


@dataclass(frozen=True)
class Outlet:
    slug: str
    name: str
    origin: str  # as written in the corpus files, e.g. https://meridian-herald.example
    feed_file: str
    feed_path: str
    feed_content_type: str


@dataclass(frozen=True)
class Corpus:
    folder: Path
    outlets: list[Outlet]
    gold: dict[str, str]  # article URL (corpus origin) -> gold story

    @classmethod
    def load(cls, folder: Path = DEMO_DIR) -> Corpus:
        document = tomllib.loads((folder / "outlets.toml").read_text("utf-8"))
        outlets = [
            Outlet(
                slug=o["slug"],
                name=o["name"],
                origin=o["origin"].rstrip("/"),
                feed_file=o["feed"],
                feed_path=o["feed_path"],
                feed_content_type=o["feed_content_type"],
            )
            for o in document["outlet"]
        ]
        gold = json.loads((folder / "gold.json").read_text("utf-8"))["articles"]
        return cls(folder, outlets, gold)

    def newest_date(self) -> datetime:
        feeds = (self.folder / o.slug / o.feed_file for o in self.outlets)
        return max(d for feed in feeds for d in _dates_in(feed.read_bytes()))


# ---------------------------------------------------------------- pure rewriting


def shift_dates(body: bytes, shift: timedelta) -> bytes:
    """Every RFC 822 and RFC 3339 timestamp in the body, moved by `shift`, in the same format."""

    def rfc822(match: re.Match[bytes]) -> bytes:
        moved = parsedate_to_datetime(match.group().decode()) + shift
        return format_datetime(moved.astimezone(UTC)).replace("-0000", "+0000").encode()

    def rfc3339(match: re.Match[bytes]) -> bytes:
        moved = datetime.fromisoformat(match.group().decode()) + shift
        return moved.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()

    return _RFC3339.sub(rfc3339, _RFC822.sub(rfc822, body))


def _dates_in(body: bytes) -> Iterator[datetime]:
    for match in _RFC822.finditer(body):
        yield parsedate_to_datetime(match.group().decode())
    for match in _RFC3339.finditer(body):
        yield datetime.fromisoformat(match.group().decode())


def shift_to_now(newest: datetime, now: datetime) -> timedelta:
    """The shift that puts the newest article at this minute."""
    return now.replace(second=0, microsecond=0) - newest


def rewrite_origins(body: bytes, origins: Mapping[str, str]) -> bytes:
    for corpus_origin, served_origin in origins.items():
        body = body.replace(corpus_origin.encode(), served_origin.encode())
    return body


# ---------------------------------------------------------------- serving


class _OutletHandler(BaseHTTPRequestHandler):
    server_version = "demo-outlet/1.0"
    routes: ClassVar[dict[str, tuple[Path, str]]] = {}
    rewrite: ClassVar[tuple[Mapping[str, str], timedelta]] = ({}, timedelta(0))

    def do_GET(self) -> None:
        route = self.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self.send_error(404)
            return
        file, content_type = route
        origins, shift = self.rewrite
        body = shift_dates(rewrite_origins(file.read_bytes(), origins), shift)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the demo prints its own progress


@dataclass(frozen=True)
class ServedCorpus:
    feed_urls: dict[str, str]  # outlet slug -> served feed URL
    origins: dict[str, str]  # corpus origin -> served origin
    names: dict[str, str]  # outlet slug -> outlet name

    def served_gold(self, corpus: Corpus) -> dict[str, str]:
        return {
            rewrite_origins(u.encode(), self.origins).decode(): s for u, s in corpus.gold.items()
        }


def _routes(corpus: Corpus, outlet: Outlet) -> dict[str, tuple[Path, str]]:
    folder = corpus.folder / outlet.slug
    routes = {outlet.feed_path: (folder / outlet.feed_file, outlet.feed_content_type)}
    for page in (folder / "pages").rglob("*.html"):
        path = "/" + page.relative_to(folder / "pages").with_suffix("").as_posix()
        routes[path] = (page, "text/html; charset=utf-8")
    return routes


@contextmanager
def serve_corpus(corpus: Corpus, *, now: datetime) -> Iterator[ServedCorpus]:
    """Serve each outlet on its own loopback address (127.0.0.2, .3, …) and a free port."""
    servers = [
        ThreadingHTTPServer((f"127.0.0.{2 + i}", 0), _OutletHandler)
        for i, _ in enumerate(corpus.outlets)
    ]
    origins = {
        outlet.origin: "http://{}:{}".format(*server.server_address[:2])
        for outlet, server in zip(corpus.outlets, servers, strict=True)
    }
    shift = shift_to_now(corpus.newest_date(), now)
    for outlet, server in zip(corpus.outlets, servers, strict=True):
        server.RequestHandlerClass = type(
            f"Handler_{outlet.slug}",
            (_OutletHandler,),
            {"routes": _routes(corpus, outlet), "rewrite": (origins, shift)},
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield ServedCorpus(
            feed_urls={o.slug: origins[o.origin] + o.feed_path for o in corpus.outlets},
            origins=origins,
            names={o.slug: o.name for o in corpus.outlets},
        )
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
