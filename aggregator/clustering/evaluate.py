"""Stream labelled articles through a fresh clusterer and score the result against the labels.

Rows are dicts in the format of the labelled JSONL files: ``id``, ``story`` (gold label),
``published`` (``YYYY-MM-DD`` or null), ``source``, ``title``, ``text`` and optionally
``language``. Rows are processed in (published, id) order, undated rows first.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from aggregator.clustering.clusterer import ClusterDoc, StoryClusterer
from aggregator.clustering.model import ClusterModel, load_default_model
from aggregator.clustering.state import InMemoryClusterState
from aggregator.metrics import bcubed_scores, pairwise_scores

Row = Mapping[str, Any]


def stream_order(rows: Iterable[Row]) -> list[Row]:
    return sorted(rows, key=lambda row: (row.get("published") or "", str(row["id"])))


def rekeyed(rows: Iterable[Row], seed: int) -> list[Row]:
    """The rows with new ids, a salted hash of the old (0: the ids as they are), so that
    :func:`stream_order` gives another arrival order: undated rows and rows of one date change
    places, dates keep their order. Ids are unique in a labelled file, and stay unique."""
    if seed == 0:
        return list(rows)
    return [{**row, "id": _salted(seed, str(row["id"]))} for row in rows]


def _salted(seed: int, key: str) -> str:
    return f"order{seed}-" + hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:16]


def parse_published(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def row_to_doc(row: Row) -> ClusterDoc:
    return ClusterDoc(
        key=str(row["id"]),
        title=str(row.get("title") or ""),
        text=str(row.get("text") or ""),
        published=parse_published(row.get("published")),
        source=str(row.get("source") or ""),
        language=row.get("language"),
    )


def cluster_rows(rows: Iterable[Row], clusterer: StoryClusterer) -> dict[str, str]:
    """Predicted story key per row id, assigning rows one by one in stream order."""
    return {str(row["id"]): clusterer.assign(row_to_doc(row)).story_key for row in rows}


def score_predictions(gold: Mapping[str, str], predicted: Mapping[str, str]) -> dict[str, float]:
    pairwise = pairwise_scores(gold, predicted)
    bcubed = bcubed_scores(gold, predicted)
    return {
        "pairwise_precision": pairwise.precision,
        "pairwise_recall": pairwise.recall,
        "pairwise_f1": pairwise.f1,
        "bcubed_precision": bcubed.precision,
        "bcubed_recall": bcubed.recall,
        "bcubed_f1": bcubed.f1,
    }


def evaluate_predictions(
    rows: Iterable[Row], model: ClusterModel | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Scores (with counts and speed) and the predictions of one streaming run."""
    ordered = stream_order(rows)
    clusterer = StoryClusterer(InMemoryClusterState(), model or load_default_model())
    started = time.perf_counter()
    predicted = cluster_rows(ordered, clusterer)
    seconds = time.perf_counter() - started
    gold = {str(row["id"]): str(row["story"]) for row in ordered}
    result: dict[str, Any] = score_predictions(gold, predicted)
    result.update(
        articles=len(ordered),
        stories=len(set(predicted.values())),
        seconds=round(seconds, 3),
        articles_per_second=round(len(ordered) / seconds, 1) if seconds > 0 else None,
    )
    return result, predicted


def evaluate_stream(rows: Iterable[Row], model: ClusterModel | None = None) -> dict[str, Any]:
    """pairwise_*/bcubed_* scores, articles, stories, seconds and articles_per_second."""
    return evaluate_predictions(rows, model)[0]
