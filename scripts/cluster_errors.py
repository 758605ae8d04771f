"""Where the story clusterer goes wrong on a labelled file: the predicted stories that join
gold stories, the gold stories it splits, and the missed pairs by how far apart their dates are.

    aggregator eval-clusters FILE.jsonl --predictions /tmp/pred.jsonl
    python scripts/cluster_errors.py FILE.jsonl /tmp/pred.jsonl [--top 10]

Each story is listed with its size and the parts the other labelling cuts it into, each part
with the title of its story's first article.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from aggregator.metrics import (
    ClusterError,
    merged_stories,
    missed_pairs_by_gap,
    pairwise_scores,
    split_stories,
)

TITLE_CHARS = 60


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def day_number(published: str | None) -> float | None:
    return float(date.fromisoformat(published[:10]).toordinal()) if published else None


def print_errors(
    heading: str, errors: Sequence[ClusterError], names: Mapping[str, str], top: int
) -> None:
    total = sum(error.pairs for error in errors)
    shown = errors[:top]
    share = sum(error.pairs for error in shown) / total if total else 0.0
    print(f"\n{heading}: {total} pairs in {len(errors)} stories", end="")
    print(f"; the top {len(shown)} hold {share:.0%}")
    for error in shown:
        print(f"  {error.label} ({sum(error.parts.values())} articles, {error.pairs} pairs)")
        for part, size in error.parts.items():
            print(f"    {size:4} {part} {names.get(part, '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labelled", type=Path)
    parser.add_argument("predictions", type=Path)
    parser.add_argument("--top", type=int, default=10, help="stories listed per kind of error")
    args = parser.parse_args()
    rows = read_jsonl(args.labelled)
    gold = {str(row["id"]): str(row["story"]) for row in rows}
    predicted = {str(p["id"]): str(p["cluster"]) for p in read_jsonl(args.predictions)}
    gold_titles: dict[str, str] = {}
    predicted_titles: dict[str, str] = {}
    for row in sorted(rows, key=lambda row: (row.get("published") or "", str(row["id"]))):
        title = str(row.get("title") or "")[:TITLE_CHARS]
        gold_titles.setdefault(gold[str(row["id"])], title)
        if str(row["id"]) in predicted:
            predicted_titles.setdefault(predicted[str(row["id"])], title)
    scores = pairwise_scores(gold, predicted)
    print(f"pairwise precision {scores.precision:.4f}, recall {scores.recall:.4f}", end="")
    print(f", F1 {scores.f1:.4f}")
    print_errors("Wrongly joined", merged_stories(gold, predicted), gold_titles, args.top)
    print_errors("Missed", split_stories(gold, predicted), predicted_titles, args.top)
    days = {str(row["id"]): day_number(row.get("published")) for row in rows}
    print("\nGold pairs by days apart: pairs, missed")
    for bucket, (pairs, missed) in missed_pairs_by_gap(gold, predicted, days).items():
        print(f"  {bucket:14} {pairs:6} {missed:6} ({missed / pairs:.0%})")


if __name__ == "__main__":
    main()
