import math
from datetime import UTC, datetime, timedelta

from aggregator.clustering.clusterer import ClusterLimits, fold_article
from aggregator.clustering.features import (
    FEATURE_NAMES,
    TIME_CAP_DAYS,
    DocVectors,
    candidate_features,
    pair_features,
    shortlist,
)
from aggregator.clustering.state import StoryProfile
from aggregator.clustering.training import Example, fit_logistic

DAY = datetime(2024, 3, 1, tzinfo=UTC)


def vectors(
    body: dict[str, float],
    *,
    entities: dict[str, float] | None = None,
    published: datetime | None = DAY,
    source: str = "",
) -> DocVectors:
    entities = entities or {}
    return DocVectors(
        title=dict(body),
        body=dict(body),
        entities=dict(entities),
        published=published,
        language="en",
        source=source,
        entity_idf={term: 5.0 for term in entities},
    )


def story_of(*docs: DocVectors, limits: ClusterLimits | None = None) -> StoryProfile:
    story = StoryProfile("s", "en")
    for doc in docs:
        story = fold_article(story, doc, limits or ClusterLimits())
    return story


def test_members_are_bounded_and_keep_the_first() -> None:
    limits = ClusterLimits(members=3)
    docs = [vectors({f"w:t{n}": 1.0}) for n in range(6)]
    story = story_of(*docs, limits=limits)
    assert story.size == 6
    assert [list(m.body) for m in story.members] == [["w:t0"], ["w:t4"], ["w:t5"]]


def test_nearest_member_matches_a_drifted_story() -> None:
    first = vectors({"w:fire": 0.8, "w:acme": 0.6})
    drift = [vectors({f"w:other{n}": 1.0}) for n in range(4)]
    story = story_of(first, *drift)
    features = pair_features(first, story)
    assert math.isclose(features["body_max"], 1.0)
    assert features["body_cos"] < 0.5


def test_time_source_and_entity_features() -> None:
    story = story_of(
        vectors({"w:fire": 1.0}, entities={"e:acme": 1.0}, source="a.example"),
    )
    later = vectors(
        {"w:fire": 1.0},
        entities={"e:acme": 0.6, "e:lopez": 0.8},
        published=DAY + timedelta(days=30),
        source="a.example",
    )
    features = pair_features(later, story)
    assert features["same_source"] == 1.0
    assert math.isclose(features["log_days"], math.log1p(TIME_CAP_DAYS))
    assert math.isclose(features["entity_cover"], 0.5)
    assert features["rare_shared"] > 0
    undated = pair_features(vectors({"w:fire": 1.0}, published=None), story)
    assert undated["log_days"] == 0.0
    assert undated["same_source"] == 0.0


def test_margins_and_shortlist() -> None:
    doc = vectors({"w:fire": 1.0})
    near = story_of(vectors({"w:fire": 1.0}))
    far = story_of(vectors({"w:fire": 0.6, "w:vote": 0.8}))
    unrelated = story_of(vectors({"w:vote": 1.0}))
    rows = candidate_features(doc, [near, far])
    assert math.isclose(rows[0]["body_cos_margin"], 0.4)
    assert math.isclose(rows[1]["body_cos_margin"], -0.4)
    assert set(FEATURE_NAMES) <= set(rows[0])
    assert shortlist(doc, [unrelated, far, near], 2) == [near, far]


def test_fit_logistic_separates_and_keeps_fixed_weights() -> None:
    names = FEATURE_NAMES
    base = dict.fromkeys(names, 0.0)

    def example(body: float, label: int) -> Example:
        return Example(tuple({**base, "body_cos": body}[n] for n in names), label)

    pool = [example(0.9, 1), example(0.8, 1), example(0.1, 0), example(0.2, 0), example(0.5, 1)]
    weights, bias = fit_logistic([pool], names=["body_cos"], fixed={"log_days": -1.0}, l2=0.01)
    assert weights["body_cos"] > 0
    assert weights["log_days"] == -1.0
    assert bias < 0
