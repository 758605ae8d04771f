import pytest

from aggregator.metrics import bcubed_scores, pairwise_scores

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
