"""CI check: run `aggregator eval-clusters` on each labelled dev file and compare its pairwise F1
with the figure recorded in bench/clustering_scores.json. Fails on a drop of more than 0.01.

    python scripts/check_clusters.py ../shared/data/clustering [--record]

--record rewrites the recorded figures with this run's (after a deliberate model change).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RECORD = Path(__file__).resolve().parent.parent / "bench" / "clustering_scores.json"
FILES = ("neus_raw", "gva_dev", "ecbplus_dev")
TOLERANCE = 0.01


def evaluate(path: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "aggregator.cli", "eval-clusters", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    recorded = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    measured = {name: evaluate(args.data_dir / f"{name}.jsonl") for name in FILES}
    failures = []
    for name, result in measured.items():
        floor = recorded.get(name, {}).get("pairwise_f1", 0.0) - TOLERANCE
        verdict = "ok" if result["pairwise_f1"] >= floor else "DROPPED"
        if verdict != "ok":
            failures.append(name)
        print(
            f"{name:12} pairwise F1 {result['pairwise_f1']:.4f} "
            f"(P {result['pairwise_precision']:.3f} R {result['pairwise_recall']:.3f})  "
            f"B-cubed F1 {result['bcubed_f1']:.4f}  "
            f"{result['articles_per_second']:.0f} articles/s  recorded "
            f"{recorded.get(name, {}).get('pairwise_f1', 'none')}  {verdict}"
        )
    if args.record:
        RECORD.write_text(json.dumps(measured, indent=2) + "\n")
        print(f"recorded in {RECORD}")
        return 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
