"""Clustering metrics: pairwise (pair-counting) and B-cubed precision, recall and F1.

Both functions take the gold labelling and the predicted labelling as mappings from an item id
to a cluster label. Items that appear in ``gold`` but not in ``predicted`` count as singleton
clusters; items that appear only in ``predicted`` are ignored.

Conventions: a ratio with an empty denominator is 1.0, and F1 is 0.0 when P + R = 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass


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
