"""Streaming story clustering (see clusterer.py for the data flow)."""

from aggregator.clustering.clusterer import (
    Assignment,
    ClusterDoc,
    ClusterLimits,
    StoryClusterer,
)
from aggregator.clustering.model import ClusterModel, load_default_model
from aggregator.clustering.state import ClusterState, InMemoryClusterState, StoryProfile

__all__ = [
    "Assignment",
    "ClusterDoc",
    "ClusterLimits",
    "ClusterModel",
    "ClusterState",
    "InMemoryClusterState",
    "StoryClusterer",
    "StoryProfile",
    "load_default_model",
]
