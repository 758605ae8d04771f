"""Score our extraction against trafilatura's plain settings on a labelled benchmark.

python scripts/check_extraction.py /work/shared/data/extraction/scrapinghub [--min-f1 0.96]

DATA_DIR holds `ground-truth.json` ({id: {"articleBody", "url"}}) and `html/<id>.html.gz`. The
metric is the benchmark's: `\\w+` tokens, multisets of 4-token shingles, per page TP/FP/FN
normalised to sum to 1; precision is the mean over pages with a non-empty prediction, recall the
mean over pages with gold text, F1 = 2PR/(P+R). Prints one JSON object with our scores and those
of each trafilatura setting, and exits non-zero when ours is below the best single setting (or
below --min-f1). Pages per second are from a single pass, for orientation only: the speed
comparison is bench/bench_extract.py.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trafilatura

from aggregator.extract import extract_article

_TOKEN = re.compile(r"\w+")
SHINGLE = 4
TRAFILATURA_SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "include_comments=False": {"include_comments": False},
    "favor_precision=True": {"favor_precision": True},
    "favor_recall=True": {"favor_recall": True},
}


@dataclass(frozen=True)
class Page:
    id: str
    url: str
    html: bytes
    gold: str


@dataclass(frozen=True)
class Scores:
    f1: float
    precision: float
    recall: float
    empty: int
    pages_per_second: float

    def as_json(self) -> dict[str, float | int]:
        return {
            "f1": round(self.f1, 4),
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "empty_predictions": self.empty,
            "pages_per_second": round(self.pages_per_second, 1),
        }


def load_pages(data_dir: Path) -> list[Page]:
    truth = json.loads((data_dir / "ground-truth.json").read_text(encoding="utf-8"))
    return [
        Page(
            key,
            row.get("url", ""),
            (data_dir / "html" / f"{key}.html.gz").read_bytes(),
            row["articleBody"],
        )
        for key, row in sorted(truth.items())
    ]


def shingles(text: str) -> Counter[tuple[str, ...]]:
    tokens = _TOKEN.findall(text)
    return Counter(tuple(tokens[i : i + SHINGLE]) for i in range(max(len(tokens) - SHINGLE + 1, 0)))


def page_counts(gold: str, predicted: str) -> tuple[float, float, float]:
    """Normalised (TP, FP, FN) of one page."""
    expected, got = shingles(gold), shingles(predicted)
    tp = sum((expected & got).values())
    fp = sum((got - expected).values())
    fn = sum((expected - got).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def score(pairs: Iterable[tuple[str, str]], seconds: float = 0.0) -> Scores:
    precisions, recalls, empty, count = [], [], 0, 0
    for gold, predicted in pairs:
        count += 1
        tp, fp, fn = page_counts(gold, predicted)
        if predicted.strip():
            precisions.append(tp / (tp + fp) if tp + fp else 0.0)
        else:
            empty += 1
        if gold.strip():
            recalls.append(tp / (tp + fn) if tp + fn else 0.0)
    p = sum(precisions) / len(precisions) if precisions else 0.0
    r = sum(recalls) / len(recalls) if recalls else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return Scores(f1, p, r, empty, count / seconds if seconds else 0.0)


def run(pages: list[Page], extract: Callable[[Page], str]) -> tuple[Scores, list[str]]:
    start = time.perf_counter()
    predictions = [extract(page) for page in pages]
    seconds = time.perf_counter() - start
    pairs = ((page.gold, text) for page, text in zip(pages, predictions, strict=True))
    return score(pairs, seconds), predictions


def ours(page: Page) -> str:
    extracted = extract_article(gzip.decompress(page.html), url=page.url)
    return extracted.text if extracted else ""


def plain(options: dict[str, Any]) -> Callable[[Page], str]:
    def extract(page: Page) -> str:
        text = trafilatura.extract(gzip.decompress(page.html), url=page.url, **options)
        return text or ""

    return extract


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder with ground-truth.json and html/")
    parser.add_argument("--min-f1", type=float, default=None, help="also fail below this F1")
    parser.add_argument("--worst", type=int, default=0, help="list our N worst pages on stderr")
    args = parser.parse_args()
    pages = load_pages(args.data_dir)
    result: dict[str, Any] = {"pages": len(pages), "trafilatura": {}}
    for name, options in TRAFILATURA_SETTINGS.items():
        result["trafilatura"][name] = run(pages, plain(options))[0].as_json()
    our_scores, predictions = run(pages, ours)
    result["ours"] = our_scores.as_json()
    best_name = max(result["trafilatura"], key=lambda n: result["trafilatura"][n]["f1"])
    best = result["trafilatura"][best_name]
    result["best_trafilatura"] = {"setting": best_name, "f1": best["f1"]}
    result["ours_minus_best_f1"] = round(our_scores.f1 - best["f1"], 4)
    print(json.dumps(result, indent=2))
    if args.worst:
        _print_worst(pages, predictions, args.worst)
    failed = round(our_scores.f1, 4) < best["f1"]
    if args.min_f1 is not None and our_scores.f1 < args.min_f1:
        failed = True
    return 1 if failed else 0


def _print_worst(pages: list[Page], predictions: list[str], count: int) -> None:
    rows = []
    for page, text in zip(pages, predictions, strict=True):
        tp, fp, fn = page_counts(page.gold, text)
        rows.append((tp, fp, fn, page.id, page.url))
    for tp, fp, fn, key, url in sorted(rows)[:count]:
        print(f"tp={tp:.2f} fp={fp:.2f} fn={fn:.2f} {key[:12]} {url}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
