"""Regrouping (aggregator.clustering.regroup): pair affinities from the pair model, average
linkage, and which group keeps which story. Values in, values out."""

from __future__ import annotations

from dataclasses import replace

from aggregator.clustering import ClusterDoc, InMemoryClusterState, StoryClusterer
from aggregator.clustering.features import DocVectors
from aggregator.clustering.model import load_default_model
from aggregator.clustering.regroup import average_linkage, matched_groups, pair_affinities
from tests.twin_events import BANFIELD_FIRE, WELBY_FIRE

GERMAN_FIRE = (
    "Feuer zerstört Harrowgate-Supermarkt in Banfield",
    "Ein Feuer hat den Supermarkt von Harrowgate Foods an der High Street in Banfield zerstört. "
    "Mehr als vierzig Feuerwehrleute kämpften gegen den Brand, der am Freitagabend im Dach "
    "ausbrach. Die Polizei behandelt das Feuer als verdächtig; Anwohner wurden evakuiert.",
)


def _vectors(reports: list[tuple[str, str]], languages: list[str]) -> dict[str, DocVectors]:
    """The reports' vectors as the clusterer weighs them once all of them were counted."""
    clusterer = StoryClusterer(InMemoryClusterState(), load_default_model())
    docs = [
        ClusterDoc(f"r{n}", title, text, None, f"outlet {n}", language)
        for n, ((title, text), language) in enumerate(zip(reports, languages, strict=True))
    ]
    for doc in docs:
        clusterer.vectorise(doc)
    return {doc.key: clusterer.weigh(doc) for doc in docs}


def test_reports_of_one_event_are_closer_than_reports_of_its_twin() -> None:
    vectors = _vectors([*BANFIELD_FIRE, *WELBY_FIRE], ["en"] * 6)
    model = load_default_model()
    affinities = pair_affinities(vectors, model, model.background)

    def pairs(within: bool) -> list[float]:
        """Affinities of pairs of one fire's reports (or of reports of different fires)."""
        return [v for (a, b), v in affinities.items() if ((a < "r3") == (b < "r3")) == within]

    assert len(pairs(True)) == 6  # every pair of one fire's reports was scored
    within, across = pairs(True), pairs(False)
    assert sum(within) / len(within) > 2 * sum(across) / len(across)
    groups = average_linkage(list(vectors), affinities, model.linkage_threshold)
    assert groups == [["r0", "r1", "r2"], ["r3", "r4", "r5"]]


def test_articles_of_two_languages_are_never_paired() -> None:
    vectors = _vectors([*BANFIELD_FIRE[:2], GERMAN_FIRE], ["en", "en", "de"])
    model = load_default_model()
    affinities = pair_affinities(vectors, model, model.background)
    assert set(affinities) == {("r0", "r1")}


def test_a_strict_model_pairs_nothing_above_its_threshold() -> None:
    vectors = _vectors(list(BANFIELD_FIRE), ["en"] * 3)
    strict = replace(load_default_model(), bias=-50.0)
    affinities = pair_affinities(vectors, strict, strict.background)
    assert average_linkage(list(vectors), affinities, 0.3) == [["r0"], ["r1"], ["r2"]]


def test_average_linkage_does_not_chain_two_groups_through_one_link() -> None:
    affinities = {("a", "b"): 0.9, ("c", "d"): 0.8, ("b", "c"): 0.5}
    # single linkage would join all four through b-c; the groups' mean link is 0.5 / 4
    assert average_linkage(["a", "b", "c", "d"], affinities, 0.4) == [["a", "b"], ["c", "d"]]
    assert average_linkage(["a", "b", "c", "d"], affinities, 0.1) == [["a", "b", "c", "d"]]
    assert average_linkage(["a", "b", "c", "d"], affinities, 0.85) == [["a", "b"], ["c"], ["d"]]


def test_average_linkage_counts_a_missing_pair_as_zero() -> None:
    affinities = {("a", "b"): 0.9, ("a", "c"): 0.6, ("b", "c"): 0.0}
    assert average_linkage(["a", "b", "c"], affinities, 0.35) == [["a", "b"], ["c"]]
    assert average_linkage(["a", "b", "c"], affinities, 0.3) == [["a", "b", "c"]]


def test_groups_keep_the_story_holding_most_of_them() -> None:
    stories = {1: "A", 2: "A", 3: "B", 4: "A", 5: "C"}
    plan = matched_groups([[1, 3], [2, 4], [5]], stories)
    assert plan == [("B", [1, 3]), ("A", [2, 4]), ("C", [5])]


def test_a_group_whose_stories_are_taken_gets_a_new_one() -> None:
    in_a = dict.fromkeys(range(1, 6), "A")
    assert matched_groups([[1, 2], [3, 4, 5]], in_a) == [(None, [1, 2]), ("A", [3, 4, 5])]
    assert matched_groups([[1, 2], [3, 4]], {1: "A", 2: "A", 3: "A", 4: "A"}) == [
        ("A", [1, 2]),
        (None, [3, 4]),
    ]


def test_a_lone_article_without_a_story_of_its_own_stays_where_it_is() -> None:
    assert matched_groups([[1, 2], [3]], {1: "A", 2: "A", 3: "A"}) == [("A", [1, 2])]
    # a tie goes to the group given first
    assert matched_groups([[1, 3], [2, 4]], {1: "A", 2: "A", 3: "B", 4: "B"}) == [
        ("A", [1, 3]),
        ("B", [2, 4]),
    ]
