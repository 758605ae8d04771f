"""Sparse TF-IDF vectors as plain ``dict[str, float]``."""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping

SparseVector = dict[str, float]


def idf(document_frequency: int, documents: int) -> float:
    """Smoothed inverse document frequency; unseen terms get the largest weight."""
    return math.log((documents + 1) / (document_frequency + 1)) + 1.0


def tfidf_vector(
    counts: Mapping[str, int], frequencies: Mapping[str, int], documents: int
) -> SparseVector:
    """Sub-linear TF times IDF, L2-normalised."""
    vector = {
        term: (1.0 + math.log(count)) * idf(frequencies.get(term, 0), documents)
        for term, count in counts.items()
        if count > 0
    }
    return normalised(vector)


def norm(vector: Mapping[str, float]) -> float:
    return math.sqrt(sum(value * value for value in vector.values()))


def normalised(vector: Mapping[str, float]) -> SparseVector:
    length = norm(vector)
    return {} if length == 0 else {term: value / length for term, value in vector.items()}


def dot(left: Mapping[str, float], right: Mapping[str, float]) -> float:
    if len(left) > len(right):
        left, right = right, left
    return sum(left[term] * right[term] for term in left.keys() & right.keys())


def cosine(left: Mapping[str, float], right: Mapping[str, float]) -> float:
    denominator = norm(left) * norm(right)
    return 0.0 if denominator == 0 else dot(left, right) / denominator


def top_terms(vector: Mapping[str, float], count: int) -> list[str]:
    """The ``count`` heaviest terms, heaviest first (ties broken by term)."""
    return [term for term, _ in heapq.nlargest(count, vector.items(), key=_weight_then_term)]


def _weight_then_term(item: tuple[str, float]) -> tuple[float, str]:
    return item[1], item[0]


def add_pruned(total: Mapping[str, float], extra: Mapping[str, float], size: int) -> SparseVector:
    """Sum of two vectors, keeping only the ``size`` heaviest terms."""
    summed = dict(total)
    for term, value in extra.items():
        summed[term] = summed.get(term, 0.0) + value
    if len(summed) <= size:
        return summed
    return {term: summed[term] for term in top_terms(summed, size)}
