"""Features of an (article, candidate story) pair, the inputs of the scoring model.

The features are meant to transfer across news streams, so they are similarities in [0, 1],
counts on a log scale, or flags:

* cosines of the article's title/body/entity vectors with the story's centroids;
* the best body/title cosine with any of the story's kept member articles (a story whose centroid
  has drifted can still be matched through its nearest member);
* ``entity_cover``: the share of the article's entity IDF mass that the story also has;
* ``rare_shared``: how many rare entities the article shares with the story: IDF above
  ``RARE_IDF`` (in under ~5% of articles) or, while the stream is too small for that share to
  mean much, in at most ``RARE_MAX_DF`` articles (and in no more than one other article per ten
  seen, so that nothing is rare among the first few);
* ``log_days``: log(1 + days) between the article and the story's date range, capped at
  ``TIME_CAP_DAYS`` (follow-ups weeks or months later are common, so beyond a week the gap
  says little more). When either side is undated, the years the texts name stand in for the
  dates: a year apart or more counts as the cap, a shared year as 0, and a text that names no
  year gives 0, no time evidence either way. (Production articles always have a date, their
  discovery time if nothing else, so only undated labelled files meet this: in ECB+, twin
  events of one kind are reported in different years.) A report that names a day of the
  story ("the shooting on June 5") is that close to it, however much later it was published:
  the gap is the shorter of the article's publication's and its nearest named date's.
  (Only the article's named dates count: taking the story's too, reports naming the same
  famous day, "Jan. 6", joined across months: neus_raw fell from 0.82 to 0.59 pairwise F1
  with the shipped model.)
* ``same_source``: the story already has an article from this outlet;
* ``log_size``: the story's size;
* margins: how far a candidate's body/entity cosine is above the best *other* candidate's;
* ``title_cos``: the cosine of the article's title with the story's title centroid;
* ``top_shared_idf``: the IDF of the rarest entity the article shares with the story, as a share
  of the highest IDF the stream can give (one shared unique name is strong evidence);
* ``z_*``: each similarity (body/entity/title cosines, nearest-member cosines, entity cover) as a
  z-score against the stream's background (see background.py). The shipped model learns only
  the z-scores, which transfer between streams; the raw values are kept for the background and
  the margins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from aggregator.clustering.background import NORMALISED, Background
from aggregator.clustering.state import StoryProfile
from aggregator.clustering.vectors import SparseVector, dot

FEATURE_NAMES: tuple[str, ...] = (
    "body_cos",
    "body_max",
    "entity_cos",
    "entity_cover",
    "title_max",
    "log_days",
    "same_source",
    "log_size",
    "body_cos_margin",
    "entity_cos_margin",
    "rare_shared",
    "title_cos",
    "top_shared_idf",
    *(f"z_{name}" for name in NORMALISED),
)
RARE_IDF = 4.0
RARE_MAX_DF = 3
RARE_SHARE_YOUNG = 0.1
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
    idf_ceiling: float = 1.0  # the IDF of a term no article had before
    years: frozenset[int] = frozenset()  # the years the text mentions
    dates: frozenset[date] = frozenset()  # the calendar dates the text names (dates.py)


def days_apart(doc: DocVectors, story: StoryProfile) -> float | None:
    """Days between the article and the story's date range (0 inside it). If either side is
    undated, the years the texts mention stand in: 0 if they share one, else 365 per year
    between the closest two; None if either text names no year."""
    published, first, last = doc.published, story.first_published, story.last_published
    if published is None or first is None or last is None:
        return years_apart(doc.years, story.years) * 365.0 if doc.years and story.years else None
    if published < first:
        gap = (first - published).total_seconds() / 86400
    elif published > last:
        gap = (published - last).total_seconds() / 86400
    else:
        return 0.0
    return min(gap, named_days_apart(doc.dates, first, last)) if doc.dates else gap


def named_days_apart(dates: Iterable[date], first: datetime, last: datetime) -> float:
    """Whole days between the nearest of the dates an article names and the story's date
    range ``first`` to ``last``."""
    first_day, last_day = first.date(), last.date()
    return float(min(_days_outside(day, first_day, last_day) for day in dates))


def _days_outside(day: date, first: date, last: date) -> int:
    return (first - day).days if day < first else (day - last).days if day > last else 0


def years_apart(years: Iterable[int], others: Iterable[int]) -> int:
    """The smallest distance between a year of ``years`` and one of ``others``."""
    return min(abs(year - other) for year in years for other in others)


def centroid_cosine(vector: SparseVector, centroid: SparseVector, length: float) -> float:
    """Cosine of a unit-length article vector with a centroid of Euclidean ``length``."""
    return 0.0 if length == 0 else dot(vector, centroid) / length


def centroid_cosines(doc: DocVectors, story: StoryProfile) -> tuple[float, float, float]:
    """Cosines of the article's title, body and entity vectors with the story's centroids."""
    title, body, entities = story.lengths
    return (
        centroid_cosine(doc.title, story.title, title),
        centroid_cosine(doc.body, story.body, body),
        centroid_cosine(doc.entities, story.entities, entities),
    )


def small_stream_rare_df(doc: DocVectors) -> float:
    """The highest document frequency that still counts as rare in a young stream: at most
    ``RARE_MAX_DF`` articles, and at most one other article per ``1 / RARE_SHARE_YOUNG`` seen."""
    documents = math.exp(doc.idf_ceiling - 1.0) - 1.0  # inverts idf(0, documents)
    return min(RARE_MAX_DF, 1.0 + RARE_SHARE_YOUNG * documents)


def pair_features(doc: DocVectors, story: StoryProfile) -> Features:
    """The similarity features of one pair, before the candidate-relative ones."""
    days = days_apart(doc, story)
    members = story.members
    idf_total = sum(doc.entity_idf.values())
    shared = [term for term in doc.entity_idf if term in story.entities]
    young_idf = doc.idf_ceiling - math.log(small_stream_rare_df(doc) + 1) - 1e-9  # idf() at it
    rare_idf = min(RARE_IDF, young_idf)
    rare = sum(1 for term in shared if doc.entity_idf[term] >= rare_idf)
    title_cos, body_cos, entity_cos = centroid_cosines(doc, story)
    return {
        "body_cos": body_cos,
        "body_max": max((dot(doc.body, m.body) for m in members), default=0.0),
        "entity_cos": entity_cos,
        "entity_cover": (
            sum(doc.entity_idf[term] for term in shared) / idf_total if idf_total else 0.0
        ),
        "title_max": max((dot(doc.title, m.title) for m in members), default=0.0),
        "title_cos": title_cos,
        "top_shared_idf": max((doc.entity_idf[t] for t in shared), default=0.0) / doc.idf_ceiling,
        "log_days": 0.0 if days is None else math.log1p(min(days, TIME_CAP_DAYS)),
        "same_source": float(bool(doc.source) and doc.source in story.sources),
        "log_size": math.log(max(story.size, 1)),
        "rare_shared": math.log1p(rare),
    }


def candidate_features(
    doc: DocVectors, stories: Sequence[StoryProfile], background: Background | None = None
) -> list[Features]:
    """Features of every candidate, including its margin over the best other candidate and
    its similarities as z-scores against the stream's ``background``."""
    background = background or Background.default()
    rows = [pair_features(doc, story) for story in stories]
    for row in rows:
        for name in NORMALISED:
            row["z_" + name] = background.z(name, row[name])
    for name in ("body_cos", "entity_cos"):
        values = [row[name] for row in rows]
        top = [*sorted(values, reverse=True)[:2], 0.0, 0.0]
        for row in rows:
            best_other = top[1] if row[name] == top[0] else top[0]
            row[name + "_margin"] = row[name] - best_other
    return rows


def shortlist(doc: DocVectors, stories: Sequence[StoryProfile], size: int) -> list[StoryProfile]:
    """The ``size`` stories with the highest body + entity centroid cosine (cheap pre-ranking)."""
    ranked = sorted(
        stories,
        key=lambda story: sum(centroid_cosines(doc, story)),
        reverse=True,
    )
    return ranked[:size]
