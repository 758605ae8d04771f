import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from aggregator.clustering.background import NORMALISED, Background
from aggregator.clustering.clusterer import ClusterLimits, fold_article, query_keys
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
from aggregator.clustering.vectors import idf

DAY = datetime(2024, 3, 1, tzinfo=UTC)


def vectors(
    body: dict[str, float],
    *,
    entities: dict[str, float] | None = None,
    published: datetime | None = DAY,
    source: str = "",
    years: frozenset[int] = frozenset(),
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
        years=years,
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


def test_an_undated_pair_scores_as_a_same_day_pair() -> None:
    """No date (and no year in the texts) is no evidence either way: neither a time penalty
    nor a feature of its own."""
    story = story_of(vectors({"w:fire": 0.6, "w:acme": 0.8}, entities={"e:acme": 1.0}))

    def features(published: datetime | None) -> dict[str, float]:
        article = vectors({"w:fire": 1.0}, entities={"e:acme": 0.6}, published=published)
        return pair_features(article, story)

    assert features(None) == features(DAY)
    assert features(None) != features(DAY + timedelta(days=7))
    assert set(features(None)) <= set(FEATURE_NAMES)


def test_undated_pairs_are_dated_by_the_years_their_texts_name() -> None:
    """Without dates, texts naming different years are as far apart as the time feature
    allows; a shared year, or a text naming none, is no time evidence."""
    story = story_of(
        vectors({"w:pirates": 1.0}, published=None, years=frozenset({2008})),
        vectors({"w:pirates": 1.0}, published=None, years=frozenset({2009})),
    )
    assert story.years == [2008, 2009]

    def log_days(years: set[int], published: datetime | None = None) -> float:
        article = vectors({"w:pirates": 1.0}, published=published, years=frozenset(years))
        return pair_features(article, story)["log_days"]

    assert math.isclose(log_days({2011}), math.log1p(TIME_CAP_DAYS))
    assert log_days({2009, 2011}) == 0.0
    assert log_days(set()) == 0.0
    assert log_days({2011}, published=DAY) == log_days({2011})  # one side undated: years
    dated = story_of(vectors({"w:pirates": 1.0}, years=frozenset({2008})))
    same_day = vectors({"w:pirates": 1.0}, years=frozenset({2011}))
    assert pair_features(same_day, dated)["log_days"] == 0.0  # real dates win


def test_title_cosine_and_rarest_shared_entity() -> None:
    story = story_of(vectors({"w:fire": 1.0}, entities={"e:acme": 0.6, "e:lopez": 0.8}))
    doc = DocVectors(
        title={"w:fire": 0.6, "w:storm": 0.8},
        body={"w:fire": 1.0},
        entities={"e:acme": 0.6, "e:lopez": 0.8},
        published=DAY,
        language="en",
        entity_idf={"e:acme": 2.0, "e:lopez": 6.0},
        idf_ceiling=8.0,
    )
    features = pair_features(doc, story)
    assert math.isclose(features["title_cos"], 0.6)
    assert math.isclose(features["top_shared_idf"], 6.0 / 8.0)
    assert pair_features(vectors({"w:fire": 1.0}), story)["top_shared_idf"] == 0.0


def test_z_scores_follow_the_background() -> None:
    doc = vectors({"w:fire": 1.0})
    near = story_of(vectors({"w:fire": 1.0}))
    quiet = Background(dict.fromkeys(NORMALISED, 0.1), dict.fromkeys(NORMALISED, 0.02))
    noisy = Background(dict.fromkeys(NORMALISED, 0.5), dict.fromkeys(NORMALISED, 0.29))
    (calm,) = candidate_features(doc, [near], quiet)
    (busy,) = candidate_features(doc, [near], noisy)
    assert calm["body_cos"] == busy["body_cos"] == 1.0
    assert math.isclose(calm["z_body_cos"], 9.0)  # (1 - 0.1) / 0.1
    assert math.isclose(busy["z_body_cos"], 2.5)  # (1 - 0.5) / 0.2: a common match means less


def test_query_keys_weigh_terms_by_their_weight_in_the_article() -> None:
    doc = DocVectors(
        title={"w:fire": 1.0},
        body={"w:fire": 0.6, "w:harbour": 0.8},
        entities={"e:acme": 1.0},
        published=DAY,
        language="en",
    )
    keys = query_keys(doc, 1)  # the heaviest term of each vector
    assert keys == {"en|e:acme": 1.0, "en|w:fire": 1.0, "en|w:harbour": 0.8}
    assert query_keys(doc, 2)["en|w:fire"] == 1.6


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


def test_profile_json_rounds_weights_only_when_asked() -> None:
    story = story_of(vectors({"w:fire": 0.6, "w:acme": 0.8}, entities={"e:acme": 1.0}))
    story = StoryProfile.from_json({**story.to_json(), "body": {"w:fire": 0.123456789}})
    assert story.to_json()["body"] == {"w:fire": 0.123456789}
    rounded = story.to_json(3)
    assert rounded["body"] == {"w:fire": 0.123}
    assert rounded["members"][0]["body"] == {"w:fire": 0.6, "w:acme": 0.8}
    assert StoryProfile.from_json(rounded).to_json() == rounded


def test_rare_entities_in_a_young_and_in_a_grown_stream() -> None:
    story = story_of(vectors({"w:fire": 1.0}, entities={"e:acme": 0.6, "e:lopez": 0.8}))

    def shared_rare(documents: int, frequencies: dict[str, int]) -> float:
        doc = DocVectors(
            title={},
            body={"w:fire": 1.0},
            entities={"e:acme": 0.6, "e:lopez": 0.8},
            published=DAY,
            language="en",
            entity_idf={t: idf(df, documents) for t, df in frequencies.items()},
            idf_ceiling=idf(0, documents),
        )
        return pair_features(doc, story)["rare_shared"]

    # 30 articles: a name in 2 or 3 of them is rare, one in 5 is not
    assert shared_rare(30, {"e:acme": 2, "e:lopez": 3}) == math.log1p(2)
    assert shared_rare(30, {"e:acme": 5, "e:lopez": 3}) == math.log1p(1)
    # 5 articles: too few to call anything rare but a name no other article has
    assert shared_rare(5, {"e:acme": 2, "e:lopez": 2}) == 0.0
    # 10,000 articles: rare means in under ~5% of them, as IDF above RARE_IDF
    assert shared_rare(10_000, {"e:acme": 300, "e:lopez": 600}) == math.log1p(1)


def test_a_report_naming_a_day_of_the_story_is_as_close_as_that_day() -> None:
    """A sentencing months after a shooting that names the shooting's day is scored as if it
    came that day; a report naming another day, or none, is as far as its publication."""
    story = story_of(
        vectors({"w:shooting": 1.0}),
        vectors({"w:shooting": 1.0}, published=DAY + timedelta(days=1)),
    )
    months_later = DAY + timedelta(days=200)

    def log_days(*named: date) -> float:
        article = replace(
            vectors({"w:shooting": 1.0}, published=months_later), dates=frozenset(named)
        )
        return pair_features(article, story)["log_days"]

    assert log_days(DAY.date() + timedelta(days=1)) == 0.0
    assert log_days(DAY.date() - timedelta(days=2), months_later.date()) == math.log1p(2)
    assert log_days(DAY.date() + timedelta(days=60)) == math.log1p(TIME_CAP_DAYS)
    assert log_days() == math.log1p(TIME_CAP_DAYS)
    undated = replace(vectors({"w:shooting": 1.0}, published=None), dates=frozenset({DAY.date()}))
    assert pair_features(undated, story)["log_days"] == 0.0  # undated: no years, no evidence
