"""`aggregator eval-clusters`: stream a labelled file through the production clustering stage.

Each row becomes an extracted article in a temporary SQLite store and goes through
pipeline.cluster_article (near-duplicates, wall pages, the story clusterer and its SQL state), one
transaction per article, in (published, id) order, with the default settings. A row without a
``language`` gets the one extraction would detect (extract.article_language), so stories never
mix languages here either. The story repair runs as beat runs it in production (see
_cluster_rows), and the stories are scored as the repair leaves them, as API clients see them.
Only the labels are kept aside, to score the stories at the end.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from aggregator import pipeline, store
from aggregator.clustering import ClusterModel
from aggregator.clustering.evaluate import parse_published, stream_order
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.dedup import content_hash
from aggregator.extract import article_language
from aggregator.metrics import bcubed_scores, pairwise_scores
from aggregator.models import Article, ExtractionStatus
from aggregator.settings import Settings

Row = Mapping[str, Any]
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # "discovered" time of rows without a date


REQUIRED_KEYS = ("id", "story", "title", "text")


def read_rows(path: Path) -> list[Row]:
    """The labelled rows of a JSONL file; ValueError names the first line that is not one."""
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                rows.append(_labelled_row(line, number))
    return rows


def _labelled_row(line: str, number: int) -> Row:
    row = json.loads(line)
    missing = [key for key in REQUIRED_KEYS if not isinstance(row, dict) or key not in row]
    if missing:
        raise ValueError(f"line {number} lacks {', '.join(missing)}")
    return dict(row)


def evaluate_rows(
    rows: Iterable[Row], settings: Settings, model: ClusterModel | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Scores, counts and speed of one streaming run, and each row's predicted story. ``model``
    replaces the shipped one (scripts/train_clusterer.py --leave-one-out); the command takes
    none."""
    ordered = stream_order(rows)
    with tempfile.TemporaryDirectory(prefix="eval-clusters-") as folder:
        url = f"sqlite:///{Path(folder) / 'eval.db'}"
        local = settings.model_copy(update={"database_url": url, "data_dir": Path(folder)})
        engine = make_engine(local.effective_database_url)
        upgrade_database(engine)
        started = time.perf_counter()
        predicted = _cluster_rows(ordered, engine, local, model)
        seconds = time.perf_counter() - started
        engine.dispose()
    gold = {str(row["id"]): str(row["story"]) for row in ordered}
    return _report(gold, predicted, seconds), predicted


def _cluster_rows(
    rows: list[Row], engine: Engine, settings: Settings, model: ClusterModel | None
) -> dict[str, str]:
    """Each row's story once the stream has gone through, with the story repair run as beat
    runs it in production: every ``pipeline.REPAIR_EVERY`` of the stream's time, and once after
    its last article (an undated file meets it only then)."""
    source_ids: dict[str, int] = {}
    article_ids: dict[str, int] = {}
    last_time: datetime | None = None
    for row in rows:
        time_now = _published(row) or EPOCH
        if last_time is not None and time_now >= last_time + pipeline.REPAIR_EVERY:
            _repair(engine, settings, last_time + pipeline.REPAIR_EVERY, model)
        last_time = time_now
        article_ids[str(row["id"])] = _cluster_row(row, engine, settings, source_ids, model)
    if last_time is not None:
        _repair(engine, settings, last_time + pipeline.REPAIR_EVERY, model)
    with session_scope(engine) as session:
        stories = store.article_stories(session=session, article_ids=list(article_ids.values()))
    return {
        key: f"story-{stories[article_id]}" if stories.get(article_id) else f"none-{key}"
        for key, article_id in article_ids.items()
    }


def _repair(engine: Engine, settings: Settings, now: datetime, model: ClusterModel | None) -> None:
    with session_scope(engine) as session:
        pipeline.repair_stories(session=session, settings=settings, now=now, model=model)


def _cluster_row(
    row: Row,
    engine: Engine,
    settings: Settings,
    source_ids: dict[str, int],
    model: ClusterModel | None,
) -> int:
    """Store the row as an extracted article and cluster it; returns the article's id."""
    with session_scope(engine) as session:
        # A row without an outlet gets one of its own: "unknown" must not look like one
        # outlet that published everything.
        outlet = str(row.get("source") or "") or f"unknown outlet of {row['id']}"
        source_id = source_ids.get(outlet)
        if source_id is None:
            source_id = _source_for(session, outlet, len(source_ids))
            source_ids[outlet] = source_id
        article = article_for_row(row, source_id)
        session.add(article)
        session.flush()
        article_id = article.id or 0
    with session_scope(engine) as session:
        pipeline.cluster_article(
            article_id,
            session=session,
            settings=settings,
            now=_published(row) or EPOCH,
            model=model,
        )
    return article_id


def _source_for(session: Session, outlet: str, number: int) -> int:
    source, _ = store.add_source(
        session=session, url=f"https://source-{number}.invalid/feed", title=outlet, now=EPOCH
    )
    return source.id or 0


def article_for_row(row: Row, source_id: int) -> Article:
    """The extracted article a labelled row stands for; its language detected if not given."""
    title, text = str(row.get("title") or ""), str(row.get("text") or "")
    return Article(
        source_id=source_id,
        guid=str(row["id"]),
        url=str(row.get("url") or "") or f"urn:eval:{row['id']}",
        canonical_url=f"urn:eval:{row['id']}",
        title=title,
        text=text,
        language=row.get("language") or article_language(None, text),
        extraction_status=ExtractionStatus.EXTRACTED.value,
        content_hash=content_hash(title, text),
        published_at=_published(row),
        discovered_at=_published(row) or EPOCH,
    )


def _published(row: Row) -> datetime | None:
    return parse_published(row.get("published"))


def _report(
    gold: Mapping[str, str], predicted: Mapping[str, str], seconds: float
) -> dict[str, Any]:
    pairwise, bcubed = pairwise_scores(gold, predicted), bcubed_scores(gold, predicted)
    return {
        "pairwise_precision": round(pairwise.precision, 4),
        "pairwise_recall": round(pairwise.recall, 4),
        "pairwise_f1": round(pairwise.f1, 4),
        "bcubed_precision": round(bcubed.precision, 4),
        "bcubed_recall": round(bcubed.recall, 4),
        "bcubed_f1": round(bcubed.f1, 4),
        "articles": len(predicted),
        "stories": len(set(predicted.values())),
        "seconds": round(seconds, 2),
        "articles_per_second": round(len(predicted) / seconds, 1) if seconds > 0 else None,
    }


def write_predictions(path: Path, predicted: Mapping[str, str]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for article_id, cluster in predicted.items():
            out.write(json.dumps({"id": article_id, "cluster": cluster}) + "\n")
