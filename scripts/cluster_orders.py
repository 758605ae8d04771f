"""Story-clustering quality over arrival orders: `aggregator eval-clusters` on one labelled file in
several arrival orders, with the mean and standard deviation of each figure.

    python scripts/cluster_orders.py FILE.jsonl [--orders 10] [--jobs 2]

A streaming clusterer decides each article when it arrives, so its stories depend on the order
the articles come in, and eval-clusters measures one order: the file's, (published, id). Order 0
here is that one; orders 1.. give every row a new id (evaluate.rekeyed), which reorders the rows of
one date and the undated ones. On an undated file (ECB+), one order's pairwise F1 is one draw
from a spread (0.02 on ecbplus_dev); a change to the clusterer shows in the mean over orders,
not in the file order's figure alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
from functools import partial
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from aggregator.cluster_eval import evaluate_rows, read_rows
from aggregator.clustering.evaluate import Row, rekeyed
from aggregator.settings import Settings

FIGURES = (
    "pairwise_precision",
    "pairwise_recall",
    "pairwise_f1",
    "bcubed_precision",
    "bcubed_recall",
    "bcubed_f1",
)


def scores_in_order(rows: list[Row], seed: int) -> dict[str, Any]:
    """eval-clusters' figures (default settings, shipped model) for arrival order ``seed``."""
    result, _ = evaluate_rows(rekeyed(rows, seed), Settings(_env_file=None))
    return {"order": seed, **{name: result[name] for name in FIGURES}}


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of each figure over the orders."""
    out: dict[str, Any] = {"orders": len(results)}
    for name in FIGURES:
        values = [float(result[name]) for result in results]
        out[name] = {
            "mean": round(statistics.mean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="a labelled JSONL file")
    parser.add_argument("--orders", type=int, default=10, help="arrival orders, the file's first")
    parser.add_argument("--jobs", type=int, default=1, help="orders evaluated in parallel")
    args = parser.parse_args()
    rows = read_rows(args.file)
    with Pool(max(args.jobs, 1)) as pool:
        results = pool.map(partial(scores_in_order, rows), range(max(args.orders, 1)))
    for result in results:
        print(json.dumps(result))
    print(json.dumps({"file": args.file.stem, **summary(results)}))


if __name__ == "__main__":
    main()
