"""Story repair decisions (aggregator.clustering.repair): which stories merge, what a merged
profile is, which members leave a drifted story. Values in, values out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aggregator.clustering import ClusterLimits, InMemoryClusterState, StoryProfile
from aggregator.clustering.clusterer import StoryClusterer, index_keys
from aggregator.clustering.features import DocVectors
from aggregator.clustering.model import load_default_model
from aggregator.clustering.repair import (
    MergeRules,
    SplitRules,
    TwinRules,
    merge_pairs,
    merged_profile,
    profile_of,
    split_members,
    story_gap,
    twin_split,
)
from aggregator.clustering.vectors import SparseVector

T0 = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

STRIKE_BODY = {"w:missile": 3.0, "w:strike": 2.0, "w:wounded": 1.5, "w:school": 1.0}
STRIKE_ENTITIES = {"e:kryvyi": 2.0, "e:rih": 2.0, "e:lysak": 1.0}
STRIKE_TITLE = {"w:missile": 1.0, "w:kryvyi": 1.0}
COMET_BODY = {"w:comet": 3.0, "w:orbit": 2.0, "w:telescope": 1.5, "w:survey": 1.0}
COMET_ENTITIES = {"e:kestrel": 2.0, "e:tamura": 2.0}
COMET_TITLE = {"w:comet": 1.0, "w:orbit": 1.0}
VOTE_BODY = {"w:budget": 3.0, "w:parliament": 2.0, "w:vote": 1.5, "w:pensions": 1.0}
VOTE_ENTITIES = {"e:oslo": 2.0, "e:store": 1.0}


def story(
    key: str,
    *,
    size: int = 1,
    first: datetime | None = T0,
    last: datetime | None = None,
    language: str | None = "en",
    body: SparseVector = STRIKE_BODY,
    entities: SparseVector = STRIKE_ENTITIES,
    title: SparseVector = STRIKE_TITLE,
) -> StoryProfile:
    terms = list(entities) + list(title) + list(body)
    return StoryProfile(
        key=key,
        language=language,
        size=size,
        first_published=first,
        last_published=last or first,
        title=dict(title),
        body=dict(body),
        entities=dict(entities),
        index_keys=index_keys(language, terms),
    )


def comet(key: str, **kwargs: object) -> StoryProfile:
    return story(key, body=COMET_BODY, entities=COMET_ENTITIES, title=COMET_TITLE, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- merging


@pytest.mark.parametrize(
    ("stories", "expected"),
    [
        pytest.param([story("a"), story("b")], [("b", "a")], id="same event: later given merges"),
        pytest.param(
            [story("a"), story("b", size=3)], [("a", "b")], id="smaller merges into larger"
        ),
        pytest.param(
            [story("a", first=T0 + HOUR), story("b", first=T0)],
            [("a", "b")],
            id="equal sizes: the earlier-published survives",
        ),
        pytest.param(
            [story("a", first=T0, last=T0 + 10 * HOUR), story("b", first=T0 + 40 * HOUR)],
            [("b", "a")],
            id="30 hours apart is close",
        ),
        pytest.param(
            [story("a"), story("b", first=T0 + 37 * HOUR)], [], id="37 hours apart is not"
        ),
        pytest.param([story("a"), story("b", language="de")], [], id="languages never merge"),
        pytest.param([story("a", first=None), story("b", first=None)], [], id="undated: never"),
        pytest.param(
            [story("a"), story("b", entities={"e:kryvyi": 1.0, "e:odesa": 3.0})],
            [],
            id="other places or people: not one event",
        ),
        pytest.param(
            [story("a"), story("b", title={"w:gas": 1.0, "w:pipelines": 1.0})],
            [],
            id="titles with nothing in common",
        ),
        pytest.param([story("a"), comet("b")], [], id="unrelated stories"),
        pytest.param(
            [story("a", size=2), comet("c"), story("b"), story("d", first=T0 + 2 * HOUR)],
            [("d", "b"), ("b", "a")],
            id="three reports of one event end in one story (best pair first), the comet stays",
        ),
    ],
)
def test_merge_pairs(stories: list[StoryProfile], expected: list[tuple[str, str]]) -> None:
    assert merge_pairs(stories) == expected


def test_merge_pairs_leave_two_settled_stories_apart() -> None:
    """Stories the regrouping judged with the pair model stay as it left them; one of them
    still merges with a story it did not see."""
    stories = [story("a"), story("b"), story("c")]
    assert merge_pairs(stories) == [("c", "b"), ("a", "b")]
    assert merge_pairs(stories, settled={"a", "b"}) == [("c", "b")]  # b, with c, stays apart
    assert merge_pairs(stories, settled={"a", "b", "c"}) == []


def test_merge_pairs_are_conservative_about_similar_topics() -> None:
    """Two strikes in one city a day apart share the place but not what happened."""
    other_strike = story(
        "b",
        first=T0 + 20 * HOUR,
        body={"w:drone": 3.0, "w:strike": 2.0, "w:power": 2.0, "w:outage": 1.5},
        entities={"e:kryvyi": 2.0, "e:rih": 2.0, "e:vilkul": 1.0},
    )
    assert merge_pairs([story("a"), other_strike]) == []
    assert merge_pairs([story("a"), other_strike], rules=MergeRules(body=0.2)) == [("b", "a")]


@pytest.mark.parametrize(
    ("a", "b", "hours"),
    [
        (story("a", first=T0, last=T0 + HOUR), story("b", first=T0 + 3 * HOUR), 2.0),
        (story("a", first=T0, last=T0 + 5 * HOUR), story("b", first=T0 + HOUR), 0.0),
        (story("a", first=T0 + 9 * HOUR), story("b", first=T0, last=T0 + 4 * HOUR), 5.0),
        (story("a", first=None), story("b"), None),
    ],
)
def test_story_gap(a: StoryProfile, b: StoryProfile, hours: float | None) -> None:
    gap = story_gap(a, b)
    assert (None if gap is None else gap / HOUR) == hours


def test_merged_profile_is_the_union() -> None:
    a = story("a", size=3, first=T0, last=T0 + 2 * HOUR)
    b = story(
        "b", size=2, first=T0 - HOUR, last=T0 + HOUR, body={"w:missile": 1.0, "w:rescue": 2.0}
    )
    merged = merged_profile(a, b, ClusterLimits())
    assert (merged.key, merged.language, merged.size) == ("a", "en", 5)
    assert (merged.first_published, merged.last_published) == (T0 - HOUR, T0 + 2 * HOUR)
    assert merged.body == {**STRIKE_BODY, "w:missile": 4.0, "w:rescue": 2.0}
    assert merged.entities == {term: 2 * value for term, value in STRIKE_ENTITIES.items()}
    assert set(merged.index_keys[:2]) == {"en|e:kryvyi", "en|e:rih"}  # heaviest first
    assert "en|w:rescue" in merged.index_keys


def test_merged_profile_prunes_like_the_clusterer() -> None:
    limits = ClusterLimits(body_terms=3)
    merged = merged_profile(story("a"), story("b", body={"w:rescue": 9.0}), limits)
    assert merged.body == {"w:rescue": 9.0, "w:missile": 3.0, "w:strike": 2.0}


# ---------------------------------------------------------------- splitting


def doc(body: SparseVector, entities: SparseVector, hours: int = 0, extra: str = "") -> DocVectors:
    if extra:  # a word of its own, so no two reports are identical
        body = {**body, extra: 0.5}
    return DocVectors(
        title={}, body=body, entities=entities, published=T0 + hours * HOUR, language="en"
    )


def strike(n: int) -> DocVectors:
    return doc(STRIKE_BODY, STRIKE_ENTITIES, n, f"w:strike{n}")


def comet_doc(n: int) -> DocVectors:
    return doc(COMET_BODY, COMET_ENTITIES, n, f"w:comet{n}")


def vote(n: int) -> DocVectors:
    return doc(VOTE_BODY, VOTE_ENTITIES, n, f"w:vote{n}")


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        pytest.param(
            {1: strike(0), 2: strike(1), 3: strike(2), 4: strike(3)}, [], id="coherent story"
        ),
        pytest.param(
            {1: strike(0), 2: strike(1), 3: strike(2), 4: comet_doc(3), 5: comet_doc(4)},
            [[4, 5]],
            id="drifted onto a comet: the comet reports leave together",
        ),
        pytest.param(
            {1: comet_doc(0), 2: comet_doc(1), 3: strike(2), 4: strike(3), 5: strike(4)},
            [[1, 2]],
            id="the core keeps the story even if it did not start it",
        ),
        pytest.param(
            {1: strike(0), 2: comet_doc(1), 3: strike(2), 4: vote(3), 5: comet_doc(4)},
            [[2, 5]],
            id="leavers grouped among themselves; a lone one stays",
        ),
        pytest.param(
            {1: comet_doc(0), 2: strike(1), 3: strike(2), 4: strike(3)},
            [],
            id="one article apart stays (the lone-article repair asks the model)",
        ),
        pytest.param(
            {1: strike(0), 2: strike(1), 3: comet_doc(2), 4: comet_doc(3)},
            [[3, 4]],
            id="equal halves: the half with the earliest member keeps it",
        ),
        pytest.param({1: strike(0), 2: comet_doc(1)}, [], id="two members are never split"),
        pytest.param(
            {1: strike(0), 2: comet_doc(1), 3: vote(2)}, [], id="all apart: loose, not drifted"
        ),
    ],
)
def test_split_members(members: dict[int, DocVectors], expected: list[list[int]]) -> None:
    assert split_members(members) == expected


def test_split_members_lets_a_lone_article_leave_if_the_rules_allow() -> None:
    members = {1: strike(0), 2: comet_doc(1), 3: strike(2), 4: vote(3), 5: comet_doc(4)}
    assert split_members(members, rules=SplitRules(min_leaving=1)) == [[2, 5], [4]]


def test_split_members_skips_stories_above_the_size_bound() -> None:
    members = {1: strike(0), 2: strike(1), 3: comet_doc(2), 4: comet_doc(3), 5: strike(4)}
    assert split_members(members, rules=SplitRules(max_members=4)) == []
    assert split_members(members) == [[3, 4]]


def test_profile_of_members_matches_the_streaming_clusterer() -> None:
    clusterer = StoryClusterer(InMemoryClusterState(), load_default_model())
    members = [strike(0), strike(5), comet_doc(2)]
    streamed = StoryProfile(key="s", language="en")
    for vectors in members:
        streamed = clusterer.add_to_story(streamed, vectors)
    assert profile_of("s", "en", members, ClusterLimits()) == streamed


# ---------------------------------------------------------------- twin events

FIRE = ["e:harrowgate", "e:foods", "e:high", "e:street"]  # what both fires' reports name
BANFIELD = [*FIRE, "e:banfield"]
WELBY = [*FIRE, "e:welby"]
# In a long stream the chain and the street come up in other stories too; the towns do not.
STREAM_COUNTS = {"e:harrowgate": 40, "e:foods": 60, "e:high": 300, "e:street": 500}


def names(*members: list[str]) -> dict[int, list[str]]:
    return dict(enumerate(members))


@pytest.mark.parametrize(
    ("members", "leaving"),
    [
        pytest.param(
            names(BANFIELD, BANFIELD, WELBY, BANFIELD, WELBY, WELBY, BANFIELD),
            [2, 4, 5],
            id="the-smaller-event-leaves",
        ),
        pytest.param(
            names(WELBY, BANFIELD, BANFIELD, WELBY, BANFIELD, WELBY),
            [1, 2, 4],
            id="of-equal-events-the-later-leaves",
        ),
        pytest.param(
            names(BANFIELD, BANFIELD, BANFIELD, FIRE, WELBY, WELBY, WELBY),
            [],
            id="too-many-articles-name-neither",
        ),
        pytest.param(
            names(*[BANFIELD] * 6, *[WELBY] * 2), [], id="a-side-of-two-articles-is-no-event"
        ),
        pytest.param(
            names(BANFIELD, BANFIELD, [*BANFIELD, "e:welby"], WELBY, WELBY, WELBY),
            [],
            id="an-article-names-both-towns",
        ),
        pytest.param(names(BANFIELD, BANFIELD, WELBY, WELBY), [], id="too-small-to-divide"),
    ],
)
def test_twin_split(members: dict[int, list[str]], leaving: list[int]) -> None:
    counts = {**STREAM_COUNTS, "e:banfield": 4, "e:welby": 4}
    assert twin_split(members, counts) == leaving


def test_twin_split_needs_names_that_are_the_story_s_own() -> None:
    """Two months that divide a story's reports tell nothing when they come up elsewhere in the
    stream: a name counts when two thirds of the articles that have it are in the story."""
    members = names(*[[*FIRE, "e:march"]] * 3, *[[*FIRE, "e:april"]] * 3)
    assert twin_split(members, {**STREAM_COUNTS, "e:march": 40, "e:april": 40}) == []
    assert twin_split(members, {**STREAM_COUNTS, "e:march": 5, "e:april": 5}) == []
    assert twin_split(members, {**STREAM_COUNTS, "e:march": 4, "e:april": 4}) == [3, 4, 5]


def test_twin_split_keeps_an_article_that_names_neither_town() -> None:
    members = names(*[BANFIELD] * 10, *[WELBY] * 9, FIRE)
    assert twin_split(members, {"e:banfield": 10, "e:welby": 9}) == list(range(10, 19))


def test_twin_split_skips_stories_above_the_size_bound() -> None:
    members = names(*[BANFIELD] * 4, *[WELBY] * 4)
    assert twin_split(members, {}, rules=TwinRules(max_members=7)) == []
    assert twin_split(members, {}, rules=TwinRules(max_members=8)) == [4, 5, 6, 7]
