"""Per-article clustering cost as the store grows: 1,000, 10,000 and 100,000 stored articles.

python bench/bench_cluster.py ../shared/data/clustering [--sizes 1000,10000,100000]
                                                        [--sql-sizes 1000,10000] [--probe N]

The three labelled dev files are replayed as one stream, copy after copy, each copy shifted in
time past the previous one and made distinct (every token gets a per-copy suffix), so that every
replayed article takes the full clustering path: no copy is caught as a duplicate of an earlier
one, and the vocabulary grows as a real stream's does. At each size, the next `--probe`
articles are timed: by default one full pass over the labelled rows (4,068), so that every size
times the same articles, each once (a shorter probe times whatever part of the data happens to
come next: ECB+ reports at one size, shooting reports at another).

Two paths are measured in one run:
- the clusterer alone (aggregator.clustering with its in-memory state), and
- the production stage (pipeline.cluster_article: near-duplicate check, clusterer, SQL state)
  on a temporary SQLite file, up to the --sql-sizes (it is slower to fill).
Not a test: it prints figures. Quote them with the machine (2 cores here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aggregator import pipeline, store
from aggregator.clustering import (
    ClusterDoc,
    InMemoryClusterState,
    StoryClusterer,
    load_default_model,
)
from aggregator.clustering.evaluate import stream_order
from aggregator.clustering.text import STOPWORDS
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.dedup import content_hash
from aggregator.models import Article, ExtractionStatus
from aggregator.settings import Settings

FILES = ("neus_raw", "gva_dev", "ecbplus_dev")
START = datetime(2030, 1, 1, tzinfo=UTC)
_TOKEN = re.compile(r"[^\W_]+")  # the clusterer's word characters (clustering/text.py)


def load_rows(data_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in FILES:
        with (data_dir / f"{name}.jsonl").open(encoding="utf-8") as lines:
            rows += [json.loads(line) for line in lines if line.strip()]
    return [dict(row) for row in stream_order(rows)]


def replay(rows: list[dict[str, Any]]) -> Iterator[ClusterDoc]:
    """An endless stream: copy k of the rows, dated after copy k-1, every token made k's own."""
    copy = 0
    while True:
        for index, row in enumerate(rows):
            published = START + timedelta(days=40 * copy, minutes=index)
            yield ClusterDoc(
                key=f"{copy}-{row['id']}",
                title=distinct(str(row.get("title") or ""), copy),
                text=distinct(str(row.get("text") or ""), copy),
                published=published,
                source=str(row.get("source") or ""),
                language="en",
            )
        copy += 1


def distinct(text: str, copy: int) -> str:
    """The text with every token suffixed for its copy: words with three letters, numbers with
    four digits, so each stays the kind of token it was. (A digit suffix on words split
    "O'Connor" into a word and a number that every article of the copy then shared: copies 10
    and up had an entity in common, and their candidate lists grew.) Stop words stay as they
    are, so the clusterer drops them as it does in the labelled rows."""
    letters = "q" + chr(97 + copy // 26 % 26) + chr(97 + copy % 26)

    def own(token: str) -> str:
        if token.lower() in STOPWORDS:  # dropped by the clusterer, as in the original
            return token
        return token + (f"{copy:04d}" if token.isdigit() else letters)

    return _TOKEN.sub(lambda m: own(m.group()), text)


def bench_in_memory(rows: list[dict[str, Any]], sizes: list[int], probe: int) -> dict[int, float]:
    clusterer = StoryClusterer(InMemoryClusterState(), load_default_model())
    return _measure(replay(rows), clusterer.assign, sizes, probe)


def bench_sql(rows: list[dict[str, Any]], sizes: list[int], probe: int) -> dict[int, float]:
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as folder:
        settings = Settings(
            _env_file=None, data_dir=Path(folder), database_url=f"sqlite:///{folder}/b.db"
        )
        engine = make_engine(settings.effective_database_url)
        upgrade_database(engine)
        with session_scope(engine) as session:
            source, _ = store.add_source(
                session=session, url="https://replay.invalid/rss", now=START
            )
            source_id = source.id or 0

        def cluster(doc: ClusterDoc) -> None:
            with session_scope(engine) as session:
                article = _article(doc, source_id)
                session.add(article)
                session.flush()
                pipeline.cluster_article(
                    article.id or 0, session=session, settings=settings, now=START
                )

        figures = _measure(replay(rows), cluster, sizes, probe)
        engine.dispose()
    return figures


def _article(doc: ClusterDoc, source_id: int) -> Article:
    return Article(
        source_id=source_id,
        guid=doc.key,
        url=f"https://replay.invalid/{doc.key}",
        canonical_url=f"https://replay.invalid/{doc.key}",
        title=doc.title,
        text=doc.text,
        language=doc.language,
        extraction_status=ExtractionStatus.EXTRACTED.value,
        content_hash=content_hash(doc.title, doc.text),
        published_at=doc.published,
        discovered_at=doc.published or START,
    )


def _measure(
    stream: Iterator[ClusterDoc], step: Any, sizes: list[int], probe: int
) -> dict[int, float]:
    """Milliseconds per article for the `probe` articles that follow each store size."""
    figures: dict[int, float] = {}
    stored = 0
    for size in sorted(sizes):
        while stored < size:
            step(next(stream))
            stored += 1
        started = time.perf_counter()
        for _ in range(probe):
            step(next(stream))
        figures[size] = 1000 * (time.perf_counter() - started) / probe
        stored += probe
        print(
            f"  {size:>7} stored: {figures[size]:7.2f} ms/article ({1000 / figures[size]:6.0f}/s)",
            flush=True,
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--sql-sizes", default="1000,10000")
    parser.add_argument("--probe", type=int, default=0, help="default: one pass over the rows")
    args = parser.parse_args()
    rows = load_rows(args.data_dir)
    probe = args.probe or len(rows)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"replaying {len(rows)} labelled articles as a distinct stream; {probe} timed per size\n")
    print("clusterer alone (in-memory state):")
    memory = bench_in_memory(rows, [int(s) for s in args.sizes.split(",") if s], probe)
    print("production stage (pipeline.cluster_article on SQLite):")
    sql = bench_sql(rows, [int(s) for s in args.sql_sizes.split(",") if s], probe)
    for name, figures in (("clusterer alone", memory), ("production stage", sql)):
        if len(figures) > 1:
            small, large = min(figures), max(figures)
            ratio = figures[large] / figures[small]
            print(f"{name}: cost at {large:,} / cost at {small:,} stored = {ratio:.2f}")


if __name__ == "__main__":
    main()
