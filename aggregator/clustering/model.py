"""The pair-scoring model: logistic regression over named features, stored as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aggregator.clustering.background import Background
from aggregator.clustering.features import FEATURE_NAMES

MODEL_RESOURCE = "model.json"


@dataclass(frozen=True)
class ClusterModel:
    """P(article belongs to story) = sigmoid(bias + sum of weight * feature).

    An article joins its best-scoring candidate story if that score reaches ``threshold``;
    otherwise it starts a new story. The story repair regroups recent articles by average
    linkage on the same scores (see regroup.py), joining groups while their mean affinity
    reaches ``regroup_threshold`` (None: ``threshold``).
    """

    weights: Mapping[str, float]
    bias: float
    threshold: float
    info: Mapping[str, Any] = field(default_factory=dict)
    background: Background = field(default_factory=Background.default)
    regroup_threshold: float | None = None

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(FEATURE_NAMES)
        if unknown:
            raise ValueError(f"model uses unknown features: {sorted(unknown)}")

    def score(self, features: Mapping[str, float]) -> float:
        total = self.bias + sum(w * features.get(name, 0.0) for name, w in self.weights.items())
        return _sigmoid(total)

    def to_json(self) -> dict[str, Any]:
        return {
            "bias": self.bias,
            "threshold": self.threshold,
            "regroup_threshold": self.regroup_threshold,
            "weights": dict(self.weights),
            "background": self.background.to_json(),
            "info": dict(self.info),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterModel:
        return cls(
            weights={str(k): float(v) for k, v in data["weights"].items()},
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
            info=dict(data.get("info", {})),
            background=(
                Background.from_json(data["background"])
                if "background" in data
                else Background.default()
            ),
            regroup_threshold=(
                None if data.get("regroup_threshold") is None else float(data["regroup_threshold"])
            ),
        )

    @property
    def linkage_threshold(self) -> float:
        """The mean affinity at which regrouping joins two groups."""
        return self.threshold if self.regroup_threshold is None else self.regroup_threshold


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)


def load_default_model() -> ClusterModel:
    """The model shipped with the package (aggregator/clustering/model.json)."""
    text = resources.files("aggregator.clustering").joinpath(MODEL_RESOURCE).read_text("utf-8")
    return ClusterModel.from_json(json.loads(text))
