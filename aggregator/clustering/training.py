"""Fit the pair model from labelled streams (used by scripts/train_clusterer.py).

Training pairs come from a teacher-forced replay of each stream: every article is scored against
the candidates the clusterer would retrieve, and then joins its *gold* story, so the features
reflect gold-story centroids. A candidate is positive if it is the article's gold story.

The logistic regression is fitted by Newton's method with an L2 penalty on standardised
features, in plain Python (a dozen features; no numerical library needed). Every stream weighs
the same in the fit, and the penalty is strong (``L2``): the corpora differ in style, story size
and date patterns, and a strongly shrunk model is the one whose scores transfer to a stream it
was not trained on (checked with leave-one-file-out in scripts/train_clusterer.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from aggregator.clustering.clusterer import StoryClusterer
from aggregator.clustering.evaluate import Row, evaluate_stream, row_to_doc, stream_order
from aggregator.clustering.features import FEATURE_NAMES, candidate_features, shortlist
from aggregator.clustering.model import ClusterModel
from aggregator.clustering.state import InMemoryClusterState, StoryProfile


@dataclass(frozen=True)
class Example:
    features: tuple[float, ...]
    label: int


def teacher_forced_examples(rows: Iterable[Row], model: ClusterModel) -> list[Example]:
    """Candidate pairs of a stream replayed with every article joining its gold story."""
    clusterer = StoryClusterer(InMemoryClusterState(), model)
    examples: list[Example] = []
    for row in stream_order(rows):
        vectors = clusterer.vectorise(row_to_doc(row))
        gold_key = f"gold-{row['story']}"
        candidates = shortlist(vectors, clusterer.candidates(vectors), clusterer.limits.shortlist)
        for story, features in zip(
            candidates, candidate_features(vectors, candidates), strict=True
        ):
            values = tuple(features[name] for name in FEATURE_NAMES)
            examples.append(Example(values, int(story.key == gold_key)))
        story = clusterer.state.story(gold_key) or StoryProfile(gold_key, vectors.language)
        clusterer.add_to_story(story, vectors)
    return examples


def streamed_examples(rows: Iterable[Row], model: ClusterModel) -> list[Example]:
    """Candidate pairs met while streaming with ``model`` (predicted, possibly mixed stories).

    A candidate is positive if most of its articles so far share the article's gold story.
    """
    clusterer = StoryClusterer(InMemoryClusterState(), model)
    members: dict[str, Counter[str]] = {}
    examples: list[Example] = []
    for row in stream_order(rows):
        gold = str(row["story"])
        vectors = clusterer.vectorise(row_to_doc(row))
        scored = clusterer.score_candidates(vectors)
        for candidate in scored:
            majority = members[candidate.story.key].most_common(1)[0][0]
            values = tuple(candidate.features[name] for name in FEATURE_NAMES)
            examples.append(Example(values, int(majority == gold)))
        assignment = clusterer.place(str(row["id"]), vectors, scored)
        members.setdefault(assignment.story_key, Counter())[gold] += 1
    return examples


L2 = 0.3
ITERATIONS = 12
# Time is a fixed prior, not learned: each dev file has its own, unrepresentative date pattern
# (one date per story, no dates at all, long follow-up tails), so a learned time weight copies
# the training files' pattern instead of generalising. logit -= 1.0 * log(1 + min(days, 7)).
TIME_FEATURE = "log_days"
TIME_WEIGHT = -1.0
LEARNED_FEATURES = tuple(name for name in FEATURE_NAMES if name != TIME_FEATURE)


def fit_logistic(
    pools: Sequence[Sequence[Example]],
    *,
    names: Sequence[str] = FEATURE_NAMES,
    fixed: Mapping[str, float] | None = None,
    l2: float = L2,
    iterations: int = ITERATIONS,
) -> tuple[dict[str, float], float]:
    """Weights per feature name and bias of an L2-regularised logistic regression.

    Each pool (one stream's examples) has total weight 1; ``l2`` is the penalty on the
    coefficients of the standardised features. ``fixed`` weights enter as an offset and are
    returned unchanged.
    """
    fixed = dict(fixed or {})
    columns = [FEATURE_NAMES.index(name) for name in names]
    fixed_columns = [(FEATURE_NAMES.index(name), weight) for name, weight in fixed.items()]
    xs: list[list[float]] = []
    ys: list[int] = []
    ws: list[float] = []
    offsets: list[float] = []
    for pool in pools:
        for example in pool:
            xs.append([example.features[c] for c in columns])
            ys.append(example.label)
            ws.append(1.0 / len(pool))
            offsets.append(sum(weight * example.features[c] for c, weight in fixed_columns))
    total = sum(ws)
    size = len(names)
    means = [sum(x[j] * w for x, w in zip(xs, ws, strict=True)) / total for j in range(size)]
    scales = [
        math.sqrt(sum((x[j] - means[j]) ** 2 * w for x, w in zip(xs, ws, strict=True)) / total)
        or 1.0
        for j in range(size)
    ]
    standard = [[1.0] + [(x[j] - means[j]) / scales[j] for j in range(size)] for x in xs]
    beta = _newton(standard, ys, ws, offsets, l2=l2, iterations=iterations)
    weights = {names[j]: beta[j + 1] / scales[j] for j in range(size)}
    bias = beta[0] - sum(weights[names[j]] * means[j] for j in range(size))
    return {**weights, **fixed}, bias


def _newton(
    xs: list[list[float]],
    ys: list[int],
    ws: list[float],
    offsets: list[float],
    *,
    l2: float,
    iterations: int,
) -> list[float]:
    width = len(xs[0])
    beta = [0.0] * width
    for _ in range(iterations):
        gradient = [l2 * b if j else 0.0 for j, b in enumerate(beta)]
        hessian = [[l2 if i == j and i else 0.0 for j in range(width)] for i in range(width)]
        for x, y, w, offset in zip(xs, ys, ws, offsets, strict=True):
            p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, _dot(beta, x) + offset))))
            curvature = w * p * (1.0 - p)
            residual = w * (p - y)
            for i in range(width):
                xi = x[i]
                gradient[i] += residual * xi
                row = hessian[i]
                scaled = curvature * xi
                for j in range(i, width):
                    row[j] += scaled * x[j]
        for i in range(width):
            for j in range(i):
                hessian[i][j] = hessian[j][i]
        step = _solve(hessian, gradient)
        beta = [b - s for b, s in zip(beta, step, strict=True)]
        if max(abs(s) for s in step) < 1e-6:
            break
    return beta


def _dot(left: Sequence[float], right: Sequence[float]) -> float:
    return sum(a * b for a, b in zip(left, right, strict=True))


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (small dense systems)."""
    size = len(vector)
    rows = [[*matrix[i], vector[i]] for i in range(size)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, size):
            factor = rows[r][col] / rows[col][col]
            for c in range(col, size + 1):
                rows[r][c] -= factor * rows[col][c]
    solution = [0.0] * size
    for r in reversed(range(size)):
        tail = sum(rows[r][c] * solution[c] for c in range(r + 1, size))
        solution[r] = (rows[r][size] - tail) / rows[r][r]
    return solution


PLACEHOLDER_MODEL = ClusterModel(weights={}, bias=0.0, threshold=1.0)
COARSE_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
THRESHOLD_STEP = 0.05
DAGGER_THRESHOLDS = (0.3, 0.5, 0.7)


def mean_pairwise_f1(streams: Sequence[Sequence[Row]], model: ClusterModel) -> float:
    scores = [float(evaluate_stream(rows, model)["pairwise_f1"]) for rows in streams]
    return sum(scores) / len(scores)


def select_threshold(streams: Sequence[Sequence[Row]], model: ClusterModel) -> float:
    """The threshold with the best mean pairwise F1 over the streams (coarse, then +-0.05)."""
    scores: dict[float, float] = {}

    def score(threshold: float) -> float:
        if threshold not in scores:
            scores[threshold] = mean_pairwise_f1(streams, replace(model, threshold=threshold))
        return scores[threshold]

    coarse = max(COARSE_THRESHOLDS, key=score)
    fine = (round(coarse - THRESHOLD_STEP, 2), coarse, round(coarse + THRESHOLD_STEP, 2))
    return max(fine, key=score)


def fit_model(pools: Sequence[list[Example]]) -> ClusterModel:
    weights, bias = fit_logistic(pools, names=LEARNED_FEATURES, fixed={TIME_FEATURE: TIME_WEIGHT})
    return ClusterModel(weights=weights, bias=bias, threshold=0.5)


def undated_copy(rows: Sequence[Row]) -> list[Row]:
    """The stream with every date removed, so the model also learns what an unknown date means."""
    return [{**row, "published": None} for row in rows]


def train_model(streams: Sequence[Sequence[Row]]) -> ClusterModel:
    """Teacher-forced fit, one round of on-policy (streamed) examples, then the threshold.

    Every stream with dates is also replayed without them (an extra example pool), so the
    ``days_unknown`` weight is learned even when no training stream is undated. The threshold is
    chosen on the original streams.
    """
    replayed = [*streams, *(undated_copy(rows) for rows in streams if _dated(rows))]
    pools = [teacher_forced_examples(rows, PLACEHOLDER_MODEL) for rows in replayed]
    model = fit_model(pools)
    for pool, rows in zip(pools, replayed, strict=True):
        for threshold in DAGGER_THRESHOLDS:
            pool += streamed_examples(rows, replace(model, threshold=threshold))
    model = fit_model(pools)
    return replace(model, threshold=select_threshold(streams, model))


def _dated(rows: Sequence[Row]) -> bool:
    return any(row.get("published") for row in rows)
