"""Background statistics of candidate similarities: z-scores, the moving average, its round trip,
and which candidates the clusterer feeds into it."""

from __future__ import annotations

import math

import pytest

from aggregator.clustering import InMemoryClusterState, StoryClusterer, load_default_model
from aggregator.clustering.background import NORMALISED, Background, mean_background
from aggregator.clustering.clusterer import ClusterDoc


def background(mean: float, sd: float) -> Background:
    return Background(dict.fromkeys(NORMALISED, mean), dict.fromkeys(NORMALISED, mean**2 + sd**2))


@pytest.mark.parametrize(
    ("mean", "sd", "value", "expected"),
    [(0.1, 0.05, 0.2, 2.0), (0.3, 0.1, 0.3, 0.0), (0.2, 0.2, 0.0, -1.0), (0.1, 0.0, 0.14, 2.0)],
)
def test_z_scores_against_the_background(
    mean: float, sd: float, value: float, expected: float
) -> None:  # the last row: a zero spread counts as MIN_SD (0.02)
    assert background(mean, sd).z("body_cos", value) == pytest.approx(expected)


def test_the_average_follows_the_stream_and_leaves_the_original_alone() -> None:
    start = background(0.1, 0.05)
    rows = [dict.fromkeys(NORMALISED, 0.5)] * 3000
    moved = start.updated(rows)
    assert moved.means["entity_cos"] == pytest.approx(0.5, abs=1e-3)
    assert moved.z("entity_cos", 0.5) == pytest.approx(0.0, abs=0.2)
    assert start.means["entity_cos"] == 0.1
    one = start.updated(rows[:1], rate=0.5)
    assert one.means["body_cos"] == pytest.approx(0.3)
    assert one.squares["body_cos"] == pytest.approx((0.0125 + 0.25) / 2)


def test_round_trip_and_mean_of_streams() -> None:
    first, second = background(0.1, 0.1), background(0.3, 0.1)
    assert Background.from_json(first.to_json()) == first
    mean = mean_background([first, second])
    assert mean.means["title_max"] == pytest.approx(0.2)
    assert math.sqrt(mean.squares["title_max"] - 0.2**2) == pytest.approx(math.sqrt(0.02))
    assert mean_background([]) == Background.default()


def doc(key: str, title: str, text: str) -> ClusterDoc:
    return ClusterDoc(key, title, text, published=None, source=key, language="en")


def test_only_the_shortlist_tail_updates_the_background() -> None:
    state = InMemoryClusterState()
    clusterer = StoryClusterer(state, load_default_model())
    clusterer.assign(doc("a", "Harbour fire in Springfield", "Fire crews fought a harbour fire."))
    clusterer.assign(doc("b", "Storm floods Shelbyville", "A storm flooded the town centre."))
    assert state.background() is None  # no article has had two candidates yet
    clusterer.assign(doc("c", "Springfield fire crews and Shelbyville storm", "Fire and storm."))
    updated = state.background()
    assert updated is not None and updated != load_default_model().background
