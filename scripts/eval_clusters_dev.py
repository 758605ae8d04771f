"""Stream a labelled JSONL file through the story clusterer and print its scores as JSON.

python scripts/eval_clusters_dev.py /path/to/gva_dev.jsonl [--predictions OUT.jsonl]
python scripts/eval_clusters_dev.py /path/to/gva_dev.jsonl --prefill 100000

--prefill N measures throughput at scale instead: it first streams N articles (replays of the
file under new ids, each replay shifted ``REPLAY_SHIFT`` later so they form new stories) into the
state, then times the next ``--measure`` replayed articles. Scores are not printed in that mode.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from aggregator.clustering import InMemoryClusterState, StoryClusterer, load_default_model
from aggregator.clustering.clusterer import ClusterDoc
from aggregator.clustering.evaluate import evaluate_predictions, row_to_doc, stream_order

REPLAY_SHIFT = timedelta(days=5 * 365)


def replays(rows: list[dict[str, Any]]) -> Iterator[ClusterDoc]:
    """The file's articles again and again, each replay with new keys and later dates."""
    ordered = [row_to_doc(row) for row in stream_order(rows)]
    for round_ in itertools.count():
        shift = REPLAY_SHIFT * round_
        for doc in ordered:
            published = None if doc.published is None else doc.published + shift
            yield replace(doc, key=f"{doc.key}#{round_}", published=published)


def throughput(rows: list[dict[str, Any]], prefill: int, measure: int) -> dict[str, Any]:
    state = InMemoryClusterState()
    clusterer = StoryClusterer(state, load_default_model())
    docs = replays(rows)
    started = time.perf_counter()
    for doc in itertools.islice(docs, prefill):
        clusterer.assign(doc)
    fill_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for doc in itertools.islice(docs, measure):
        clusterer.assign(doc)
    seconds = time.perf_counter() - started
    return {
        "store_articles": state.document_count() - measure,
        "measured_articles": measure,
        "articles_per_second": round(measure / seconds, 1),
        "prefill_articles_per_second": round(prefill / fill_seconds, 1) if prefill else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="labelled JSONL file")
    parser.add_argument("--predictions", type=Path, help="write {id, story} lines here")
    parser.add_argument("--prefill", type=int, help="measure speed after this many articles")
    parser.add_argument("--measure", type=int, default=2000, help="articles timed (--prefill)")
    args = parser.parse_args()
    with args.file.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    if args.prefill is not None:
        print(json.dumps(throughput(rows, args.prefill, args.measure)))
        return
    result, predicted = evaluate_predictions(rows)
    if args.predictions:
        with args.predictions.open("w", encoding="utf-8") as out:
            for item, story in predicted.items():
                out.write(json.dumps({"id": item, "story": story}) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
