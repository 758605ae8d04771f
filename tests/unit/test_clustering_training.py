"""The training streams the pair model learns from (aggregator/clustering/training.py)."""

from __future__ import annotations

from collections import Counter

from aggregator.clustering.training import YOUNG_SAMPLES, YOUNG_STORIES, young_streams


def stream(stories: int, per_story: int) -> list[dict[str, object]]:
    return [
        {"id": f"{story}-{n}", "story": f"s{story}", "title": "", "text": "", "published": None}
        for story in range(stories)
        for n in range(per_story)
    ]


def test_young_streams_hold_whole_gold_stories() -> None:
    rows = stream(stories=60, per_story=3)
    samples = young_streams(rows, seed=0)
    assert len(samples) == YOUNG_SAMPLES
    for sample in samples:
        sizes = Counter(str(row["story"]) for row in sample)
        assert len(sizes) == YOUNG_STORIES
        assert set(sizes.values()) == {3}  # every chosen story comes with all its articles


def test_young_streams_are_reproducible_and_differ_between_draws() -> None:
    rows = stream(stories=60, per_story=2)
    first, again = young_streams(rows, seed=1), young_streams(rows, seed=1)
    assert first == again
    assert len({tuple(str(row["id"]) for row in sample) for sample in first}) > 1


def test_a_small_stream_gives_all_its_stories() -> None:
    rows = stream(stories=5, per_story=2)
    assert all(len(sample) == len(rows) for sample in young_streams(rows, seed=0))
