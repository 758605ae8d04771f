"""Clustering metrics: pairwise (pair-counting) and B-cubed precision, recall and F1.

Both functions take the gold labelling and the predicted labelling as mappings from an item id
to a cluster label. Items that appear in ``gold`` but not in ``predicted`` count as singleton
clusters; items that appear only in ``predicted`` are ignored.

Conventions: a ratio with an empty denominator is 1.0, and F1 is 0.0 when P + R = 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float


def f1_score(precision: float, recall: float) -> float:
    total = precision + recall
    return 0.0 if total == 0 else 2 * precision * recall / total


def _ratio(numerator: float, denominator: float) -> float:
    return 1.0 if denominator == 0 else numerator / denominator


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _predicted_labels(gold: Mapping[str, str], predicted: Mapping[str, str]) -> dict[str, str]:
    """Predicted cluster per gold item; unpredicted items get a private singleton label."""
    labels: dict[str, str] = {}
    for item in gold:
        label = predicted.get(item)
        labels[item] = f"p:{label}" if label is not None else f"s:{item}"
    return labels


def pairwise_scores(gold: Mapping[str, str], predicted: Mapping[str, str]) -> Scores:
    """Pair-counting precision, recall and F1 over all unordered pairs of gold items."""
    clusters = _predicted_labels(gold, predicted)
    cells = Counter((gold[item], clusters[item]) for item in gold)
    true_positive = sum(_pairs(n) for n in cells.values())
    predicted_positive = sum(_pairs(n) for n in Counter(clusters.values()).values())
    positive = sum(_pairs(n) for n in Counter(gold.values()).values())
    precision = _ratio(true_positive, predicted_positive)
    recall = _ratio(true_positive, positive)
    return Scores(precision, recall, f1_score(precision, recall))


def bcubed_scores(gold: Mapping[str, str], predicted: Mapping[str, str]) -> Scores:
    """B-cubed precision, recall and F1: per-item ratios averaged with equal weight."""
    if not gold:
        return Scores(1.0, 1.0, 1.0)
    clusters = _predicted_labels(gold, predicted)
    cells = Counter((gold[item], clusters[item]) for item in gold)
    gold_sizes = Counter(gold.values())
    cluster_sizes = Counter(clusters.values())
    precision_sum = 0.0
    recall_sum = 0.0
    for item, story in gold.items():
        overlap = cells[(story, clusters[item])]
        precision_sum += overlap / cluster_sizes[clusters[item]]
        recall_sum += overlap / gold_sizes[story]
    precision = precision_sum / len(gold)
    recall = recall_sum / len(gold)
    return Scores(precision, recall, f1_score(precision, recall))


# ---------------------------------------------------------------- where the errors are


@dataclass(frozen=True)
class ClusterError:
    """One cluster of one labelling that the other labelling cuts into ``parts``.

    For a merge, ``label`` is a predicted story and ``parts`` the gold stories in it, ``pairs``
    the pairs it wrongly joins; for a split, ``label`` is a gold story and ``parts`` the
    predicted stories it is spread over, ``pairs`` the pairs it misses.
    """

    label: str
    parts: dict[str, int]
    pairs: int


def merged_stories(gold: Mapping[str, str], predicted: Mapping[str, str]) -> list[ClusterError]:
    """Predicted stories that hold more than one gold story, most wrongly joined pairs first."""
    errors = _cut_clusters(_predicted_labels(gold, predicted), gold)
    return [replace(error, label=_shown(error.label)) for error in errors]


def split_stories(gold: Mapping[str, str], predicted: Mapping[str, str]) -> list[ClusterError]:
    """Gold stories spread over more than one predicted story, most missed pairs first (an item
    missing from ``predicted`` is a part of its own, ``unassigned:<item>``)."""
    errors = _cut_clusters(gold, _predicted_labels(gold, predicted))
    return [
        replace(error, parts={_shown(part): n for part, n in error.parts.items()})
        for error in errors
    ]


def _cut_clusters(outer: Mapping[str, str], inner: Mapping[str, str]) -> list[ClusterError]:
    """Clusters of ``outer`` that ``inner`` cuts, with the pairs between their parts."""
    parts: dict[str, Counter[str]] = {}
    for item, label in outer.items():
        parts.setdefault(label, Counter())[inner[item]] += 1
    errors = [
        ClusterError(label, dict(cells.most_common()), _pairs(cells.total()) - _cell_pairs(cells))
        for label, cells in parts.items()
        if len(cells) > 1
    ]
    return sorted(errors, key=lambda error: (-error.pairs, error.label))


def _shown(label: str) -> str:
    """A label of :func:`_predicted_labels` as the caller knows it."""
    kind, _, name = label.partition(":")
    return name if kind == "p" else f"unassigned:{name}"


def _cell_pairs(cells: Counter[str]) -> int:
    return sum(_pairs(n) for n in cells.values())


GAP_BUCKETS: tuple[tuple[str, float], ...] = (
    ("0-1 days", 1),
    ("2-7 days", 7),
    ("8-30 days", 30),
    ("31-365 days", 365),
    ("over 365 days", float("inf")),
)


def missed_pairs_by_gap(
    gold: Mapping[str, str], predicted: Mapping[str, str], days: Mapping[str, float | None]
) -> dict[str, tuple[int, int]]:
    """Gold pairs and the ones the prediction splits, per bucket of days between the two
    items' dates (``days``: each item's date as a day number; ``undated`` if either has none)."""
    clusters = _predicted_labels(gold, predicted)
    members: dict[str, list[str]] = {}
    for item, story in gold.items():
        members.setdefault(story, []).append(item)
    counts = {name: [0, 0] for name, _ in (*GAP_BUCKETS, ("undated", 0))}
    for items in members.values():
        for i, left in enumerate(items):
            for right in items[i + 1 :]:
                count = counts[_gap_bucket(days.get(left), days.get(right))]
                count[0] += 1
                count[1] += clusters[left] != clusters[right]
    return {name: (pairs, missed) for name, (pairs, missed) in counts.items() if pairs}


def _gap_bucket(left: float | None, right: float | None) -> str:
    if left is None or right is None:
        return "undated"
    gap = abs(left - right)
    return next(name for name, limit in GAP_BUCKETS if gap <= limit)
