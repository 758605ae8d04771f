"""Train the story-clusterer pair model from labelled JSONL streams.

    python scripts/train_clusterer.py A.jsonl B.jsonl C.jsonl            # writes model.json
    python scripts/train_clusterer.py --leave-one-out [--jobs 3] A.jsonl B.jsonl C.jsonl

--leave-one-out prints, for each file, what `aggregator eval-clusters` scores it (the production
clustering stage and story repair, default settings) with a model trained without that file.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from aggregator.cluster_eval import evaluate_rows
from aggregator.clustering.training import train_model
from aggregator.settings import Settings

DEFAULTS = Settings(_env_file=None)  # what eval-clusters runs with when nothing is configured
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "aggregator/clustering/model.json"


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def held_out_scores(streams: dict[str, list[dict[str, Any]]], held_out: str) -> dict[str, Any]:
    """Scores on ``held_out`` of a model trained on the other streams, as eval-clusters gives
    them."""
    model = train_model([rows for name, rows in streams.items() if name != held_out])
    result, _ = evaluate_rows(streams[held_out], DEFAULTS, model)
    return {"file": held_out, "threshold": model.threshold, **result}


def leave_one_out(streams: dict[str, list[dict[str, Any]]], jobs: int) -> None:
    score = partial(held_out_scores, streams)
    with Pool(max(jobs, 1)) as pool:
        for result in pool.imap(score, streams):
            print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="labelled JSONL files")
    parser.add_argument("--leave-one-out", action="store_true")
    parser.add_argument("--jobs", type=int, default=1, help="held-out files run in parallel")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    streams = {path.stem: read_rows(path) for path in args.files}
    if args.leave_one_out:
        leave_one_out(streams, args.jobs)
        return
    model = train_model(list(streams.values()))
    model = type(model).from_json({**model.to_json(), "info": {"trained_on": sorted(streams)}})
    args.output.write_text(json.dumps(model.to_json(), indent=2) + "\n", encoding="utf-8")
    for name, rows in streams.items():
        print(json.dumps({"file": name, **evaluate_rows(rows, DEFAULTS, model)[0]}))


if __name__ == "__main__":
    main()
