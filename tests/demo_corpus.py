"""Facts about seeds/demo used by several tests, read from gold.json and the seed file."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOLD = json.loads((REPO / "seeds" / "demo" / "gold.json").read_text("utf-8"))["articles"]
SEED_TEXT = (REPO / "seeds" / "000_d64880312fa3c9d0.txt").read_text("utf-8")
SEED_URL = "https://meridian-herald.example/world/2025/12/04/putin-peace-plan"
WIRE_ORIGINAL = (
    "https://northgate-wire.example/stories/2025/12/04/putin-27-point-plan-four-packages"
)
WIRE_COPY = "https://harbour-gazette.example/world/kremlin-accepts-some-points-rejects-others"
SEED_STORY = "kremlin-peace-plan"
MENTIONED_EVENTS = ("kryvyi-rih-strike", "macron-xi-beijing", "umerov-florida-talks")


def urls_of(story: str) -> set[str]:
    return {url for url, gold in GOLD.items() if gold == story}


def token_f1(predicted: str, gold: str) -> float:
    """F1 of the multisets of lower-cased \\w+ tokens."""
    p, g = Counter(re.findall(r"\w+", predicted.lower())), Counter(re.findall(r"\w+", gold.lower()))
    overlap = sum((p & g).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(g.values())
    return 2 * precision * recall / (precision + recall)
