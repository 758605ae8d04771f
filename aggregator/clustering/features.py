"""Features of an (article, candidate story) pair, the inputs of the scoring model.

The features are meant to transfer across news streams, so they are similarities in [0, 1],
counts on a log scale, or flags:

* cosines of the article's title/body/entity vectors with the story's centroids;
* the best body/title cosine with any of the story's kept member articles (a story whose centroid
  has drifted can still be matched through its nearest member);
* ``entity_cover``: the share of the article's entity IDF mass that the story also has;
* ``rare_shared``: how many rare entities (IDF above ``RARE_IDF``, i.e. in under ~5% of articles)
  the article shares with the story;
* ``log_days``: log(1 + days) between the article and the story's date range, capped at
  ``TIME_CAP_DAYS`` (follow-ups weeks or months later are common, so beyond a week the gap
  says little more); 0 when either side is undated, and then ``days_unknown`` is 1;
* ``same_source``: the story already has an article from this outlet;
* ``log_size``: the story's size;
* margins: how far a candidate's body/entity cosine is above the best *other* candidate's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aggregator.clustering.state import StoryProfile
from aggregator.clustering.vectors import SparseVector, dot, norm

FEATURE_NAMES: tuple[str, ...] = (
    "body_cos",
    "body_max",
    "entity_cos",
    "entity_cover",
    "title_max",
    "log_days",
    "days_unknown",
    "same_source",
    "log_size",
    "body_cos_margin",
    "entity_cos_margin",
    "rare_shared",
)
RARE_IDF = 4.0
TIME_CAP_DAYS = 7.0

Features = dict[str, float]


@dataclass(frozen=True)
class DocVectors:
    """One article's TF-IDF vectors, weighted with the document frequencies of its arrival."""

    title: SparseVector
    body: SparseVector
    entities: SparseVector
    published: datetime | None
    language: str | None
    source: str = ""
    entity_idf: Mapping[str, float] = field(default_factory=dict)


def days_apart(published: datetime | None, story: StoryProfile) -> float | None:
    """Days between the article and the story's date range (0 inside it); None if undated."""
    first, last = story.first_published, story.last_published
    if published is None or first is None or last is None:
        return None
    if published < first:
        return (first - published).total_seconds() / 86400
    if published > last:
        return (published - last).total_seconds() / 86400
    return 0.0


def centroid_cosine(vector: SparseVector, centroid: SparseVector) -> float:
    """Cosine of a unit-length article vector with an un-normalised centroid."""
    length = norm(centroid)
    return 0.0 if length == 0 else dot(vector, centroid) / length


def pair_features(doc: DocVectors, story: StoryProfile) -> Features:
    """The similarity features of one pair, before the candidate-relative ones."""
    days = days_apart(doc.published, story)
    members = story.members
    idf_total = sum(doc.entity_idf.values())
    shared = [term for term in doc.entity_idf if term in story.entities]
    rare = sum(1 for term in shared if doc.entity_idf[term] > RARE_IDF)
    return {
        "body_cos": centroid_cosine(doc.body, story.body),
        "body_max": max((dot(doc.body, m.body) for m in members), default=0.0),
        "entity_cos": centroid_cosine(doc.entities, story.entities),
        "entity_cover": (
            sum(doc.entity_idf[term] for term in shared) / idf_total if idf_total else 0.0
        ),
        "title_max": max((dot(doc.title, m.title) for m in members), default=0.0),
        "log_days": 0.0 if days is None else math.log1p(min(days, TIME_CAP_DAYS)),
        "days_unknown": float(days is None),
        "same_source": float(bool(doc.source) and doc.source in story.sources),
        "log_size": math.log(max(story.size, 1)),
        "rare_shared": math.log1p(rare),
    }


def candidate_features(doc: DocVectors, stories: Sequence[StoryProfile]) -> list[Features]:
    """Features of every candidate, including its margin over the best other candidate."""
    rows = [pair_features(doc, story) for story in stories]
    for name in ("body_cos", "entity_cos"):
        values = [row[name] for row in rows]
        top = [*sorted(values, reverse=True)[:2], 0.0, 0.0]
        for row in rows:
            best_other = top[1] if row[name] == top[0] else top[0]
            row[name + "_margin"] = row[name] - best_other
    return rows


def shortlist(doc: DocVectors, stories: Sequence[StoryProfile], size: int) -> list[StoryProfile]:
    """The ``size`` stories with the highest body + entity centroid cosine (cheap pre-ranking)."""
    if len(stories) <= size:
        return list(stories)
    ranked = sorted(
        stories,
        key=lambda story: (
            centroid_cosine(doc.body, story.body) + centroid_cosine(doc.entities, story.entities)
        ),
        reverse=True,
    )
    return ranked[:size]
