"""Crawl throughput against one local server: polls per second when every feed answers 304, and
with fresh 50-entry feeds stored into a temporary SQLite. Prints figures; not a test.

    .venv/bin/python bench/bench_crawl.py [--feeds 200]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aggregator import pipeline, store
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.fetch import Fetcher
from aggregator.settings import Settings

HOST = "127.0.0.77"


def feed(index: int, entries: int = 50) -> bytes:
    items = "".join(
        f"<item><guid>f{index}-e{i}</guid><title>Feed {index} entry {i}</title>"
        f"<link>http://{HOST}/a/{index}/{i}</link><description>Summary {i}</description></item>"
        for i in range(entries)
    )
    return (
        f'<rss version="2.0"><channel><title>Feed {index}</title>{items}</channel></rss>'.encode()
    )


def serve() -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            index = int(self.path.rsplit("/", 1)[1])
            etag = f'"{index}"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = feed(index)
            self.send_response(200)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def timed(label: str, polls: int, run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    rate = polls / (time.perf_counter() - started)
    print(f"{label:<42} {rate:8.1f} polls/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feeds", type=int, default=200)
    args = parser.parse_args()
    server, port = serve()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(tmp),
            database_url=f"sqlite:///{tmp}/bench.db",
            fetch_allow_networks=[ipaddress.ip_network("127.0.0.0/8")],
            host_requests_per_minute=1_000_000,
            host_max_concurrent=1_000,
        )
        engine = make_engine(settings.effective_database_url)
        upgrade_database(engine)
        fetcher = Fetcher(settings)
        now = datetime.now(UTC)
        with session_scope(engine) as session:
            ids = [
                store.add_source(session=session, url=f"http://{HOST}:{port}/feed/{i}", now=now)[
                    0
                ].id
                or 0
                for i in range(args.feeds)
            ]

        def poll_all() -> None:
            for source_id in ids:
                with session_scope(engine) as session:
                    pipeline.poll_feed(
                        source_id, session=session, fetcher=fetcher, settings=settings, now=now
                    )

        print(
            f"machine: {platform.machine()} {platform.processor() or ''} "
            f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; SQLite store, one process, one thread"
        )
        print(f"{args.feeds} feeds on one loopback server ({HOST}:{port})")
        fresh = timed("fresh 50-entry feeds (parse + store 50)", len(ids), poll_all)
        cached = timed("every feed answers 304", len(ids), poll_all)
        with session_scope(engine) as session:
            articles = sum(
                store.entries_since(
                    session=session, source_id=i, since=datetime(2000, 1, 1, tzinfo=UTC)
                )
                for i in ids
            )
        print(f"stored {articles} articles ({articles / len(ids):.0f} per feed)")
        print(f"304 vs fresh: {cached / fresh:.1f}x; fresh = {fresh * 50:.0f} entries/s")
        fetcher.close()
        engine.dispose()
    server.shutdown()


if __name__ == "__main__":
    main()
