"""Benchmark of the story query API on a large store. Prints figures; never run as a test.

Builds a store of N articles in S stories by replaying the labelled dev data under
../shared/data/clustering (real titles and texts, so full-text search has real work) with shifted
dates, bulk-inserted straight through SQL; then serves the API with uvicorn in its own process(es)
and drives it with C concurrent clients, each a process of its own on one keep-alive connection
(so that no client shares the server's CPU or another client's), over a mix of listings, filters
and searches, next to a baseline (a story by primary key) measured in the same run. Each run also
prints the server's CPU time per request (its processes, from /proc: Linux only) and the load
average, as the machine may be busy with other work.

    .venv/bin/python bench/bench_api.py                          # SQLite, 100k articles
    .venv/bin/python bench/bench_api.py --backend postgres --articles 200000
    .venv/bin/python bench/bench_api.py --clients 4 --clients 16 --seconds 20
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import Engine

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aggregator.db import make_engine, upgrade_database  # noqa: E402
from aggregator.models import Article, Source, Story  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "clustering"
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SPAN = timedelta(days=60)
BATCH = 5000
STOP = frozenset(
    {"the", "a", "an", "of", "to", "in", "and", "for", "on", "with", "at", "by", "from"}
    | {"is", "are", "was", "were", "be", "as", "that", "this", "it"}
)


def load_rows(folder: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for name in ("neus_raw.jsonl", "gva_dev.jsonl", "ecbplus_dev.jsonl"):
        path = folder / name
        if path.exists():
            rows += [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    if not rows:
        raise SystemExit(f"no dev data under {folder}")
    return rows


def keywords(title: str) -> list[str]:
    words = [w for w in re.findall(r"\w+", title.lower()) if w not in STOP and len(w) > 2]
    return list(dict.fromkeys(words))[:8]


def fill(engine: Engine, rows: list[dict[str, str]], articles: int, stories: int) -> None:
    """Sources, then articles in time order (story i takes a run of consecutive articles)."""
    now = datetime.now(UTC)
    outlets = sorted({r["source"] or "unknown" for r in rows})
    with engine.begin() as connection:
        connection.execute(
            insert(Source),
            [
                {
                    "id": i + 1,
                    "url": f"https://feeds{i}.example/rss",
                    "title": name,
                    "site_url": "",
                    "health": "ok",
                    "created_at": now - SPAN,
                    "next_poll_at": now,
                    "consecutive_errors": 0,
                    "moved_count": 0,
                }
                for i, name in enumerate(outlets)
            ],
        )
    source_of = {name: i + 1 for i, name in enumerate(outlets)}
    per_story = articles / stories
    stats: dict[int, dict[str, object]] = defaultdict(dict)
    outlets_of: dict[int, set[int]] = defaultdict(set)
    batch: list[dict[str, object]] = []
    started = time.perf_counter()
    for i in range(articles):
        row = rows[i % len(rows)]
        story_id = int(i / per_story) + 1
        published = now - SPAN + SPAN * (i / articles)
        source_id = source_of[row["source"] or "unknown"]
        outlets_of[story_id].add(source_id)
        info = stats[story_id]
        info.setdefault("headline", row["title"] or row["text"][:80])
        info.setdefault("first_seen", published)
        info["last_seen"] = published
        info["article_count"] = int(info.get("article_count", 0)) + 1  # type: ignore[call-overload]
        url = f"https://a.example/{i}"
        batch.append(
            {
                "id": i + 1,
                "source_id": source_id,
                "guid": url,
                "url": url,
                "canonical_url": url,
                "title": row["title"],
                "summary": "",
                "text": row["text"],
                "language": "en",
                "extraction_status": "extracted",
                "published_at": published,
                "discovered_at": published,
                "story_id": story_id,
            }
        )
        if len(batch) == BATCH:
            _insert_articles(engine, batch, stats, outlets_of)
            batch = []
            print(f"\r  {i + 1:,} articles ({time.perf_counter() - started:.0f} s)", end="")
    _insert_articles(engine, batch, stats, outlets_of)
    print()


def _insert_articles(
    engine: Engine,
    batch: list[dict[str, object]],
    stats: dict[int, dict[str, object]],
    outlets_of: dict[int, set[int]],
) -> None:
    if not batch:
        return
    story_ids = sorted({int(a["story_id"]) for a in batch})  # type: ignore[call-overload]
    with engine.begin() as connection:
        existing = {
            row[0]
            for row in connection.execute(
                select(Story.__table__.c.id).where(Story.__table__.c.id.in_(story_ids))  # type: ignore[attr-defined]
            )
        }
        for sid in story_ids:
            values = _story_values(sid, stats[sid], outlets_of[sid])
            if sid in existing:
                connection.execute(
                    Story.__table__.update().where(Story.__table__.c.id == sid),  # type: ignore[attr-defined]
                    values,
                )
            else:
                connection.execute(insert(Story), [values])
        connection.execute(insert(Article), batch)


def _story_values(sid: int, info: dict[str, object], outlets: set[int]) -> dict[str, object]:
    headline = str(info["headline"])
    return {
        "id": sid,
        "headline": headline,
        "language": "en",
        "first_seen": info["first_seen"],
        "last_seen": info["last_seen"],
        "article_count": info["article_count"],
        "source_count": len(outlets),
        "keywords": keywords(headline),
        "headline_score": 1.0,
        "profile": {},
    }


@contextmanager
def store(backend: str, folder: Path, keep: str | None) -> Iterator[str]:
    """A database URL: a temporary store, or the store named `keep`, made if missing and kept
    (a SQLite file of that name in the current directory; a PostgreSQL database)."""
    if backend == "sqlite":
        yield f"sqlite:///{Path(keep).resolve() if keep else folder / 'bench.db'}"
        return
    name = keep or f"aggregator_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        if not keep:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def is_filled(engine: Engine, articles: int, stories: int) -> bool:
    """True when a kept store holds the articles and stories asked for already."""
    with engine.connect() as connection:
        counts = connection.execute(
            text("SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM stories)")
        ).one()
    return tuple(counts) == (articles, stories)


@contextmanager
def server(database_url: str, folder: Path, port: int, workers: int) -> Iterator[tuple[str, int]]:
    env = {
        **os.environ,
        "AGGREGATOR_DATABASE_URL": database_url,
        "AGGREGATOR_DATA_DIR": str(folder / "data"),
        "AGGREGATOR_CONFIG_FILE": str(folder / "none.toml"),
    }
    code = (
        "from aggregator.api.serve import serve; "
        f"serve(host='127.0.0.1', port={port}, workers={workers}, log_level='warning')"
    )
    command = [sys.executable, "-c", code]  # uvicorn, TCP_NODELAY kept with several workers
    process = subprocess.Popen(command, env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def request_mix(rows: list[dict[str, str]], stories: int, sources: int) -> list[tuple[str, str]]:
    """(kind, path) pairs: the listings, filters and searches that clients send."""
    rng = random.Random(7)
    words = [
        w for w, n in Counter(w for r in rows[:3000] for w in keywords(r["title"])).most_common(400)
    ]
    mix: list[tuple[str, str]] = []
    for _ in range(400):
        word, other = rng.choice(words), rng.choice(words)
        mix += [
            ("baseline: /stories/{id}", f"/stories/{rng.randint(1, stories)}"),
            ("list hot", "/stories"),
            ("list recent", "/stories?sort=recent&limit=50"),
            ("list size", "/stories?sort=size"),
            ("filter lang+min_sources", "/stories?language=en&min_sources=3&sort=recent"),
            ("filter source", f"/stories?source={rng.randint(1, sources)}&sort=recent"),
            ("filter since", "/stories?sort=recent&since=" + _days_ago(rng.randint(1, 50))),
            ("search 1 word", f"/stories?q={word}"),
            ("search 2 words recent", f"/stories?q={word}+{other}&sort=recent"),
            ("search articles", f"/articles?q={word}"),
        ]
    rng.shuffle(mix)
    return mix


def _days_ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


Timings = dict[str, list[float]]


def drive(base: str, mix: list[tuple[str, str]], clients: int, seconds: float) -> Timings:
    """Clients in processes, each sending the mix in turn from its own point of it (spread over
    the mix, so that clients seldom ask the same thing at once); latencies (ms) by kind."""
    results: multiprocessing.Queue[tuple[Timings, Counter[int]]] = multiprocessing.Queue()
    start_at = time.time() + 0.5
    processes = [
        multiprocessing.Process(
            target=_client, args=(base, mix, n * len(mix) // clients, start_at, seconds, results)
        )
        for n in range(clients)
    ]
    for process in processes:
        process.start()
    timings: Timings = defaultdict(list)
    errors: Counter[int] = Counter()
    for _ in processes:
        client_timings, client_errors = results.get(timeout=seconds + 120)
        for kind, values in client_timings.items():
            timings[kind] += values
        errors += client_errors
    for process in processes:
        process.join()
    if errors:
        print(f"  non-200 answers: {dict(errors)}")
    return timings


def _client(
    base: str,
    mix: list[tuple[str, str]],
    offset: int,
    start_at: float,
    seconds: float,
    results: multiprocessing.Queue[tuple[Timings, Counter[int]]],
) -> None:
    address = urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    timings: Timings = defaultdict(list)
    errors: Counter[int] = Counter()
    time.sleep(max(0.0, start_at - time.time()))
    i = offset
    while time.time() < start_at + seconds:
        kind, path = mix[i % len(mix)]
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        timings[kind].append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            errors[response.status] += 1
        i += 1
    connection.close()
    results.put((dict(timings), errors))


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its descendants, from /proc."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total + sum(cpu_seconds(int(child)) for child in children)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(timings: Timings, clients: int, seconds: float, cpu: float) -> None:
    total = sum(len(v) for v in timings.values())
    print(
        f"\n  {clients} clients, {seconds:.0f} s: {total / seconds:,.0f} requests/s; server CPU"
        f" {cpu * 1000 / max(total, 1):.1f} ms/request; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"  {'query':<28}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    every: list[float] = []
    for kind in sorted(timings):
        values = timings[kind]
        if not kind.startswith("baseline"):
            every += values
        print(
            f"  {kind:<28}{len(values):>7}{statistics.median(values):>9.1f}"
            f"{percentile(values, 0.95):>9.1f}{percentile(values, 0.99):>9.1f}"
        )
    print(
        f"  {'all listings and searches':<28}{len(every):>7}{statistics.median(every):>9.1f}"
        f"{percentile(every, 0.95):>9.1f}{percentile(every, 0.99):>9.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--stories", type=int, default=20_000)
    parser.add_argument("--clients", type=int, action="append")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--keep",
        metavar="NAME",
        help="reuse the store NAME (a PostgreSQL database or a SQLite file), built if missing "
        "and kept: later runs skip the build",
    )
    args = parser.parse_args()
    rows = load_rows(args.data)
    with tempfile.TemporaryDirectory() as tmp, store(args.backend, Path(tmp), args.keep) as url:
        engine = make_engine(url)
        upgrade_database(engine)
        started = time.perf_counter()
        if is_filled(engine, args.articles, args.stories):
            print(f"{args.backend}: reusing {args.articles:,} articles in {args.stories:,} stories")
        else:
            print(f"{args.backend}: loading {args.articles:,} articles in {args.stories:,} stories")
            fill(engine, rows, args.articles, args.stories)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE"))
        else:
            with engine.begin() as c:
                c.execute(text("ANALYZE"))
        print(f"  loaded in {time.perf_counter() - started:.0f} s")
        sources = len({r["source"] for r in rows})
        engine.dispose()
        mix = request_mix(rows, args.stories, sources)
        with server(url, Path(tmp), args.port, args.workers) as (base, pid):
            drive(base, mix, 2, 3)  # warm-up
            for clients in args.clients or [4, 16]:
                print(f"\n  load average before: {os.getloadavg()[0]:.1f}")
                cpu = cpu_seconds(pid)
                timings = drive(base, mix, clients, args.seconds)
                report(timings, clients, args.seconds, cpu_seconds(pid) - cpu)


if __name__ == "__main__":
    main()
