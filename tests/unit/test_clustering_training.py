"""The training streams the pair model learns from (aggregator/clustering/training.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from aggregator.clustering.features import FEATURE_NAMES
from aggregator.clustering.training import (
    PLACEHOLDER_MODEL,
    THRESHOLD_TIE,
    YOUNG_SAMPLES,
    YOUNG_STORIES,
    highest_near_best,
    teacher_forced_examples,
    young_streams,
)


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


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({0.35: 0.7978, 0.4: 0.7904, 0.45: 0.7889, 0.5: 0.7868}, 0.45),  # a near-tie: higher
        ({0.35: 0.80, 0.4: 0.80 - 2 * THRESHOLD_TIE, 0.5: 0.70}, 0.35),  # a clear best
        ({0.4: 0.5}, 0.4),
    ],
)
def test_a_near_tie_goes_to_the_higher_threshold(
    scores: dict[float, float], expected: float
) -> None:
    assert highest_near_best(scores) == expected


def test_training_pairs_ignore_the_years_that_stand_in_for_dates() -> None:
    """The years an undated text names keep twin events apart when clustering; the training
    pairs are scored without them (see training.vectorise_without_years)."""
    report = "Navy frigate captures Somali pirates in the Gulf of Aden after a chase at sea."
    rows = [
        {
            "id": "a",
            "story": "s1",
            "title": "Pirates caught",
            "text": f"{report} In 2008.",
            "published": None,
        },
        {
            "id": "b",
            "story": "s2",
            "title": "Pirates caught",
            "text": f"{report} In 2011.",
            "published": None,
        },
    ]
    examples, _ = teacher_forced_examples(rows, PLACEHOLDER_MODEL)
    assert examples  # b met a's story as a candidate
    days = FEATURE_NAMES.index("log_days")
    assert {example.features[days] for example in examples} == {0.0}
