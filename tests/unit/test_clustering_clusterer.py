import json
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.clustering import (
    ClusterDoc,
    ClusterModel,
    InMemoryClusterState,
    StoryClusterer,
    StoryProfile,
    load_default_model,
)
from aggregator.clustering.clusterer import Assignment, index_keys

DAY = datetime(2024, 3, 1, tzinfo=UTC)

FIRE_1 = (
    "Fire destroys Springfield warehouse",
    "A fire destroyed the Acme warehouse in Springfield on Friday night. Fire chief Maria "
    "Lopez said 40 firefighters fought the blaze on Elm Street for six hours. No one was hurt, "
    "but the Acme building collapsed and smoke covered the Springfield riverfront.",
)
FIRE_2 = (
    "Springfield warehouse fire: Acme building collapses",
    "Firefighters battled a blaze that destroyed the Acme warehouse on Elm Street in "
    "Springfield. Chief Maria Lopez said the fire started late Friday and the building "
    "collapsed. Smoke spread across the Springfield riverfront; nobody was injured.",
)
ELECTION = (
    "Parliament in Oslo passes budget after late vote",
    "Norway's parliament approved the national budget in Oslo after a late-night vote. Prime "
    "minister Jonas Store thanked the Centre Party for its support. The budget raises pensions "
    "and cuts fuel taxes, the finance ministry said in a statement.",
)
FILLER = [
    (
        f"Filler report number {n}",
        f"Unrelated filler text about topic {n}: gardening, recipes, cycling, museums, "
        f"weather over the Alps and chess tournaments in Vienna, item {n}.",
    )
    for n in range(8)
]


def doc(
    key: str, article: tuple[str, str], *, published: datetime | None = DAY, language: str = "en"
) -> ClusterDoc:
    title, text = article
    return ClusterDoc(key, title, text, published, source="", language=language)


def clusterer(state: InMemoryClusterState | None = None) -> StoryClusterer:
    return StoryClusterer(state or InMemoryClusterState(), load_default_model())


def warm(target: StoryClusterer) -> None:
    """Give the document frequencies some background so IDF weights mean something."""
    for n, article in enumerate(FILLER):
        target.assign(doc(f"filler-{n}", article, published=DAY - timedelta(days=40)))


def test_two_reports_of_one_event_join() -> None:
    target = clusterer()
    warm(target)
    first = target.assign(doc("a", FIRE_1))
    second = target.assign(doc("b", FIRE_2, published=DAY + timedelta(hours=5)))
    assert first.is_new
    assert not second.is_new
    assert second.story_key == first.story_key


def test_unrelated_article_starts_new_story() -> None:
    target = clusterer()
    warm(target)
    fire = target.assign(doc("a", FIRE_1))
    vote = target.assign(doc("b", ELECTION))
    assert vote.is_new
    assert vote.story_key != fire.story_key


def test_undated_articles_are_clustered() -> None:
    target = clusterer()
    warm(target)
    first = target.assign(doc("a", FIRE_1, published=None))
    second = target.assign(doc("b", FIRE_2, published=None))
    assert second.story_key == first.story_key


def test_languages_never_mix() -> None:
    target = clusterer()
    warm(target)
    english = target.assign(doc("a", FIRE_1, language="en"))
    other = target.assign(doc("b", FIRE_2, language="de"))
    same_text = target.assign(doc("c", FIRE_1, language="fr"))
    assert other.is_new
    assert same_text.is_new
    assert len({english.story_key, other.story_key, same_text.story_key}) == 3


def test_default_model_loads() -> None:
    model = load_default_model()
    assert 0.0 < model.threshold < 1.0
    assert model.weights
    assert ClusterModel.from_json(json.loads(json.dumps(model.to_json()))) == model
    assert model.regroup_threshold is not None and 0.0 < model.linkage_threshold < 1.0


def test_a_model_without_a_regroup_threshold_regroups_at_its_threshold() -> None:
    data = {**load_default_model().to_json(), "threshold": 0.55}
    del data["regroup_threshold"]
    assert ClusterModel.from_json(data).linkage_threshold == 0.55
    data["regroup_threshold"] = 0.3
    assert ClusterModel.from_json(data).linkage_threshold == 0.3


def test_state_round_trips_through_json() -> None:
    state = InMemoryClusterState()
    target = clusterer(state)
    warm(target)
    story_key = target.assign(doc("a", FIRE_1)).story_key
    restored = InMemoryClusterState.from_json(json.loads(json.dumps(state.to_json())))
    assert restored.to_json() == state.to_json()
    assert restored.story(story_key) == state.story(story_key)
    assert clusterer(restored).assign(doc("b", FIRE_2)).story_key == story_key


def test_candidates_ignore_stories_outside_window() -> None:
    state = InMemoryClusterState()
    keys = dict.fromkeys(index_keys("en", ["w:fire", "e:springfield"]), 1.0)
    old = StoryProfile("old", "en", size=1, last_published=DAY - timedelta(days=60))
    recent = StoryProfile("recent", "en", size=1, last_published=DAY - timedelta(days=2))
    for story in (old, recent):
        state.save_story(StoryProfile(**{**story.__dict__, "index_keys": list(keys)}))
    found = state.candidate_stories(keys, active_since=DAY - timedelta(days=30), limit=10)
    assert [story.key for story in found] == ["recent"]
    everything = state.candidate_stories(keys, active_since=None, limit=10)
    assert {story.key for story in everything} == {"old", "recent"}


def test_candidates_rank_by_key_weight_then_recency() -> None:
    state = InMemoryClusterState()
    fire, springfield, storm = index_keys("en", ["w:fire", "e:springfield", "w:storm"])
    for key, keys in (("springfield", [springfield]), ("fire", [fire]), ("storm", [storm])):
        state.save_story(StoryProfile(key, "en", size=1, index_keys=keys))
    state.save_story(StoryProfile("fire-again", "en", size=1, index_keys=[fire]))
    weights = {fire: 0.2, springfield: 0.7, storm: 0.2}
    found = state.candidate_stories(weights, active_since=None, limit=3)
    assert [story.key for story in found] == ["springfield", "fire-again", "storm"]


def test_old_story_is_not_joined_after_window() -> None:
    target = StoryClusterer(InMemoryClusterState(), load_default_model(), window=timedelta(7))
    warm(target)
    first = target.assign(doc("a", FIRE_1))
    later = target.assign(doc("b", FIRE_2, published=DAY + timedelta(days=30)))
    assert later.is_new
    assert later.story_key != first.story_key


def test_story_profile_without_members_still_loads() -> None:
    target = clusterer()
    warm(target)
    story_key = target.assign(doc("a", FIRE_1)).story_key
    stored = target.state.story(story_key)
    assert stored is not None
    assert len(stored.members) == 1
    data = stored.to_json()
    del data["members"], data["sources"], data["years"]
    older = StoryProfile.from_json(data)
    assert older.members == []
    assert older.sources == []
    assert older.years == []
    assert StoryProfile.from_json(stored.to_json()) == stored


def test_same_outlet_and_members_are_tracked() -> None:
    target = clusterer()
    warm(target)
    first = target.assign(ClusterDoc("a", *FIRE_1, DAY, source="a.example", language="en"))
    target.assign(ClusterDoc("b", *FIRE_2, DAY, source="b.example", language="en"))
    story = target.state.story(first.story_key)
    assert story is not None
    assert story.sources == ["a.example", "b.example"]
    assert len(story.members) == 2


def test_undated_reports_naming_different_years_score_as_if_a_week_apart() -> None:
    """Without dates, the years the texts name stand in for them: two reports naming different
    years score as the same reports published a week (the time feature's cap) apart."""
    first = (FIRE_1[0], FIRE_1[1] + " It was the worst fire since 2019.")
    second = (FIRE_2[0], FIRE_2[1] + " Crews said the 2023 season was dry.")

    def second_report(published: datetime | None, later: datetime | None) -> Assignment:
        target = clusterer()
        warm(target)
        target.assign(doc("a", first, published=published))
        return target.assign(doc("b", second, published=later))

    undated = second_report(None, None)
    assert undated.score == pytest.approx(second_report(DAY, DAY + timedelta(days=7)).score)
    assert undated.score < second_report(DAY, DAY).score - 0.1


def test_a_report_months_later_naming_the_story_day_scores_as_that_day() -> None:
    """The clusterer places the dates a text names (March 1 in a September report is this
    year's) and scores the report as if it came then."""
    later = DAY + timedelta(days=200)

    def second_report(text: str) -> Assignment:
        target = clusterer()
        warm(target)
        target.assign(doc("a", FIRE_1))
        return target.assign(doc("b", (FIRE_2[0], FIRE_2[1] + text), published=later))

    named = second_report(" The fire broke out on March 1.")
    other_day = second_report(" The fire broke out on June 1.")
    same_day = clusterer()
    warm(same_day)
    same_day.assign(doc("a", FIRE_1))
    at_once = same_day.assign(doc("b", (FIRE_2[0], FIRE_2[1] + " The fire broke out on March 1.")))
    assert named.score == pytest.approx(at_once.score)
    assert named.score > other_day.score + 0.1


def test_home_elsewhere_is_the_story_the_article_would_join_now() -> None:
    target = clusterer()
    warm(target)
    fire = target.assign(doc("a", FIRE_1))
    vote = target.assign(doc("b", ELECTION))
    again = doc("c", FIRE_2, published=DAY + timedelta(hours=5))
    documents = target.state.document_count()

    home = target.home_elsewhere(target.weigh(again), current="story-c")
    assert home is not None and home.story.key == fire.story_key
    assert home.score >= target.model.threshold
    assert target.home_elsewhere(target.weigh(again), current=fire.story_key) is None
    assert target.home_elsewhere(target.weigh(doc("d", ELECTION)), current=vote.story_key) is None
    assert target.state.document_count() == documents  # weighing counts nothing


def test_home_elsewhere_leaves_the_background_alone() -> None:
    target = clusterer()
    warm(target)
    for key, article in (("x", FIRE_1), ("y", FIRE_2)):  # two stories of one fire
        vectors = target.vectorise(doc(key, article))
        target.add_to_story(StoryProfile(key=f"story-{key}", language="en"), vectors)
    target.state.save_background(target.model.background)
    vectors = target.vectorise(doc("z", FIRE_1, published=DAY + timedelta(hours=5)))
    assert len(target.candidates(vectors)) == 2  # the shortlist's tail would move it

    assert target.home_elsewhere(vectors, current="story-z") is not None
    assert target.state.background() == target.model.background
    target.score_candidates(vectors)  # streaming, by contrast, moves it
    assert target.state.background() != target.model.background
