import pytest

from aggregator.metrics import (
    ClusterError,
    bcubed_scores,
    merged_stories,
    missed_pairs_by_gap,
    pairwise_scores,
    split_stories,
)

# (gold, predicted, pairwise P/R/F1, B-cubed P/R/F1)
CASES = [
    pytest.param(
        {"a": "x", "b": "x", "c": "y"},
        {"a": "1", "b": "1", "c": "2"},
        (1.0, 1.0, 1.0),
        (1.0, 1.0, 1.0),
        id="perfect",
    ),
    pytest.param(
        {"a": "x", "b": "x", "c": "y"},
        {},
        (1.0, 0.0, 0.0),
        (1.0, 2 / 3, 0.8),
        id="unpredicted-items-are-singletons",
    ),
    pytest.param(
        {"a": "x", "b": "x", "c": "y"},
        {"a": "1", "b": "1", "c": "1"},
        (1 / 3, 1.0, 0.5),
        (5 / 9, 1.0, 2 * (5 / 9) / (5 / 9 + 1)),
        id="all-in-one",
    ),
    pytest.param(
        {"a": "x", "b": "y"},
        {"a": "1", "b": "2"},
        (1.0, 1.0, 1.0),
        (1.0, 1.0, 1.0),
        id="no-positive-pairs-no-predicted-pairs",
    ),
    pytest.param(
        {"a": "x", "b": "y"},
        {"a": "1", "b": "1"},
        (0.0, 1.0, 0.0),
        (0.5, 1.0, 2 / 3),
        id="only-false-pairs",
    ),
    pytest.param(
        {"a": "x", "b": "x", "c": "x", "d": "y"},
        {"a": "1", "b": "1", "c": "2", "d": "2"},
        (0.5, 1 / 3, 0.4),
        (0.75, 2 / 3, 2 * 0.75 * (2 / 3) / (0.75 + 2 / 3)),
        id="split-and-merge",
    ),
    pytest.param({}, {}, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), id="empty"),
]


@pytest.mark.parametrize(("gold", "predicted", "pairwise", "bcubed"), CASES)
def test_scores(
    gold: dict[str, str],
    predicted: dict[str, str],
    pairwise: tuple[float, float, float],
    bcubed: tuple[float, float, float],
) -> None:
    pw = pairwise_scores(gold, predicted)
    b3 = bcubed_scores(gold, predicted)
    assert (pw.precision, pw.recall, pw.f1) == pytest.approx(pairwise)
    assert (b3.precision, b3.recall, b3.f1) == pytest.approx(bcubed)


def test_predicted_items_outside_gold_are_ignored() -> None:
    gold = {"a": "x", "b": "x"}
    assert pairwise_scores(gold, {"a": "1", "b": "1", "z": "1"}).f1 == 1.0
    assert bcubed_scores(gold, {"a": "1", "b": "1", "z": "1"}).f1 == 1.0


def test_merged_stories_name_the_gold_stories_each_predicted_story_joins() -> None:
    gold = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "z", "f": "z", "g": "w"}
    predicted = {"a": "1", "b": "1", "c": "1", "d": "2", "e": "2", "f": "2", "g": "3"}
    assert merged_stories(gold, predicted) == [
        ClusterError("1", {"x": 2, "y": 1}, pairs=2),
        ClusterError("2", {"z": 2, "y": 1}, pairs=2),
    ]


def test_split_stories_name_the_predicted_parts_and_the_missed_pairs() -> None:
    gold = {"a": "x", "b": "x", "c": "x", "d": "y", "e": "y", "f": "z"}
    predicted = {"a": "1", "b": "1", "c": "2", "d": "3", "e": "3", "f": "4"}
    assert split_stories(gold, predicted) == [ClusterError("x", {"1": 2, "2": 1}, pairs=2)]


def test_an_unpredicted_item_is_a_part_of_its_own() -> None:
    gold = {"a": "x", "b": "x"}
    assert split_stories(gold, {"a": "1"}) == [
        ClusterError("x", {"1": 1, "unassigned:b": 1}, pairs=1)
    ]
    assert merged_stories(gold, {"a": "1"}) == []


def test_errors_are_ordered_by_pairs_most_first_then_by_label() -> None:
    gold = {"a": "x", "b": "y", "c": "x", "d": "y", "e": "z", "g": "w", "h": "v"}
    predicted = {"a": "2", "b": "2", "c": "1", "d": "1", "e": "1", "g": "0", "h": "0"}
    assert [error.label for error in merged_stories(gold, predicted)] == ["1", "0", "2"]


def test_missed_pairs_are_counted_by_days_between_the_two_articles() -> None:
    gold = {"a": "x", "b": "x", "c": "x", "d": "y", "e": "y", "f": "z", "g": "z"}
    predicted = {"a": "1", "b": "1", "c": "2", "d": "3", "e": "4", "f": "5", "g": "5"}
    days: dict[str, float | None] = {"a": 0, "b": 1, "c": 40, "d": 3, "e": 900, "f": None, "g": 2}
    assert missed_pairs_by_gap(gold, predicted, days) == {
        "0-1 days": (1, 0),
        "31-365 days": (2, 2),
        "over 365 days": (1, 1),
        "undated": (1, 0),
    }
