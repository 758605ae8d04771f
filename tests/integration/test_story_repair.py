"""Story repair on a real store (SQLite and PostgreSQL): merges of split events, splits of
drifted stories, stable ids through the API, and a second run that changes nothing."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from aggregator import pipeline, store
from aggregator.api.app import create_app
from aggregator.cluster_store import SqlClusterState
from aggregator.clustering import ClusterDoc, StoryClusterer, StoryProfile, load_default_model
from aggregator.db import session_scope
from aggregator.models import Article, Story, StoryIndexEntry
from aggregator.settings import Settings
from tests.conftest import Invoke
from tests.stored import NOW, add_extracted_article
from tests.twin_events import BANFIELD_FIRE, WELBY_FIRE
from workers import tasks
from workers.celery_app import build_runtime, celery_config, use_runtime

HOUR = timedelta(hours=1)
STRIKE = (
    "Missile strike wounds six in Kryvyi Rih",
    "A Russian missile struck the city of Kryvyi Rih overnight, wounding six people including a "
    "three-year-old girl, regional officials said. More than forty residential buildings, a school "
    "and gas pipelines were damaged in the attack on the industrial city, according to the head of "
    "the regional military administration, Serhiy Lysak. Rescue crews worked through the night.",
)
STRIKE_OTHER = (
    "Girl among six wounded in Kryvyi Rih missile strike",
    "Six people were wounded when a Russian missile hit residential districts of Kryvyi Rih in "
    "central Ukraine, among them a girl aged three, governor Serhiy Lysak reported. A school, gas "
    "pipes and over forty apartment buildings in Kryvyi Rih were damaged, officials said.",
)
STRIKE_THIRD = (
    "Kryvyi Rih missile strike: six wounded, school damaged",
    "Serhiy Lysak, head of the regional administration, said a Russian missile wounded six "
    "residents of Kryvyi Rih overnight, a three-year-old girl among them. Forty residential "
    "buildings, a school and gas pipelines in Kryvyi Rih were damaged; rescue crews searched "
    "the rubble through the night.",
)
COMET = (
    "Comet on unusual orbit spotted by Kestrel observatory",
    "Astronomers at the Kestrel observatory have identified a faint comet on an unusual orbit that "
    "will bring it close to the inner solar system late next year. The object, named Tamura-Holm, "
    "was spotted in survey images taken over three nights and confirmed by two other telescopes.",
)
COMET_OTHER = (
    "Kestrel astronomers find comet Tamura-Holm",
    "The comet Tamura-Holm, found by astronomers of the Kestrel observatory in survey images, "
    "follows an unusual orbit towards the inner solar system, where it will arrive late next "
    "year. Two other telescopes confirmed the faint object after three nights of observation.",
)
BUDGET = (
    "Parliament in Oslo passes budget after late vote",
    "Norway's parliament approved the national budget in Oslo after a late-night vote. Prime "
    "minister Jonas Store thanked the Centre Party for its support. The budget raises pensions "
    "and cuts fuel taxes, the finance ministry said in a statement.",
)


def _add(session: Session, source: str, article: tuple[str, str], hours: int = 0) -> Article:
    return add_extracted_article(session, source, *article, hours=hours)


def _story(engine: Engine, *reports: tuple[str, tuple[str, str], int]) -> int:
    """A story of these (source, article, hour) reports, stored as the streaming pass stores one,
    whatever the clusterer would have decided for them."""
    with session_scope(engine) as session:
        articles = [_add(session, source, article, hours) for source, article, hours in reports]
        state = SqlClusterState(session, now=NOW)
        clusterer = StoryClusterer(state, load_default_model())
        profile = StoryProfile(key=f"story-{articles[0].id}", language="en")
        for article in articles:
            doc = ClusterDoc(
                str(article.id), article.title, article.text, article.published_at, "", "en"
            )
            profile = clusterer.add_to_story(profile, clusterer.vectorise(doc))
        story = state.story_row(profile.key)
        assert story is not None and story.id is not None
        for article in articles:
            article.story_id = story.id
        session.flush()
        story.article_count = len(articles)
        story.source_count = store.distinct_sources_in_story(session=session, story_id=story.id)
        story.first_seen = min(a.published_at or NOW for a in articles)
        story.last_seen = max(a.published_at or NOW for a in articles)
        story.headline = articles[0].title
        return story.id


def _repair(engine: Engine, settings: Settings) -> pipeline.RepairReport:
    with session_scope(engine) as session:
        return pipeline.repair_stories(session=session, settings=settings, now=NOW + 6 * HOUR)


def _steps_only(settings: Settings) -> Settings:
    """Settings under which the repair does not regroup, so that its other steps (merge, split,
    lone articles) are seen on their own: regrouping covers the stories that began in the
    window, the other steps also the stories that began before it."""
    return settings.model_copy(update={"cluster_regroup_max_articles": 0})


def _assert_a_second_pass_changes_nothing(engine: Engine, settings: Settings) -> None:
    before = _snapshot(engine)
    assert _repair(engine, settings) == pipeline.RepairReport()
    assert _snapshot(engine) == before


def _snapshot(engine: Engine) -> dict[str, Any]:
    with session_scope(engine) as session:
        stories = session.exec(select(Story).order_by(Story.id)).all()  # type: ignore[arg-type]
        articles = session.exec(select(Article).order_by(Article.id)).all()  # type: ignore[arg-type]
        index = session.exec(select(StoryIndexEntry)).all()
        return {
            "stories": [s.model_dump() for s in stories],
            "articles": [(a.id, a.story_id) for a in articles],
            "index": sorted((e.key, e.story_id) for e in index),
        }


def _members(engine: Engine, story_id: int) -> list[str]:
    with session_scope(engine) as session:
        rows = store.articles_in_story(session=session, story_id=story_id)
        return [a.title for a in rows]


def _row(engine: Engine, story_id: int) -> Story:
    with session_scope(engine) as session:
        story = session.get(Story, story_id)
        assert story is not None
        return story


def test_stories_of_one_event_merge_and_the_loser_redirects(
    engine: Engine, settings: Settings
) -> None:
    settings = _steps_only(settings)
    larger = _story(engine, ("wire", STRIKE, 0), ("ledger", STRIKE_OTHER, 1))
    smaller = _story(engine, ("gazette", STRIKE_THIRD, 2))
    comet = _story(engine, ("science", COMET, 1))
    budget = _story(engine, ("nordic", BUDGET, 2))
    untouched = {i: _row(engine, i).model_dump() for i in (comet, budget)}

    report = _repair(engine, settings)

    assert report.merged == [(smaller, larger)] and report.split == []
    assert sorted(_members(engine, larger)) == sorted([STRIKE[0], STRIKE_OTHER[0], STRIKE_THIRD[0]])
    survivor, loser = _row(engine, larger), _row(engine, smaller)
    assert (survivor.article_count, survivor.source_count) == (3, 3)
    assert survivor.first_seen == NOW and survivor.last_seen == NOW + 2 * HOUR
    assert StoryProfile.from_json(survivor.profile).size == 3
    assert "kryvyi" in survivor.keywords
    assert loser.merged_into_id == larger and loser.article_count == 0
    with session_scope(engine) as session:
        assert (
            session.exec(select(StoryIndexEntry).where(StoryIndexEntry.story_id == smaller)).all()
            == []
        )
        assert [s.id for s in store.latest_stories(session=session, limit=10)].count(smaller) == 0
    assert {i: _row(engine, i).model_dump() for i in (comet, budget)} == untouched

    _assert_a_second_pass_changes_nothing(engine, settings)


def test_a_drifted_story_is_split(engine: Engine, settings: Settings) -> None:
    settings = _steps_only(settings)
    drifted = _story(
        engine,
        ("wire", STRIKE, 0),
        ("science", COMET, 1),
        ("ledger", STRIKE_OTHER, 2),
        ("gazette", STRIKE_THIRD, 3),
        ("observer", COMET_OTHER, 4),
    )
    report = _repair(engine, settings)

    assert report.merged == [] and len(report.split) == 1
    ((story, new),) = report.split
    assert story == drifted
    assert _members(engine, drifted) == [STRIKE[0], STRIKE_OTHER[0], STRIKE_THIRD[0]]
    assert _members(engine, new) == [COMET[0], COMET_OTHER[0]]
    core, leavers = _row(engine, drifted), _row(engine, new)
    assert (core.article_count, core.source_count, core.last_seen) == (3, 3, NOW + 3 * HOUR)
    assert (leavers.article_count, leavers.first_seen) == (2, NOW + HOUR)
    assert leavers.headline in {COMET[0], COMET_OTHER[0]} and "kestrel" in leavers.keywords
    assert StoryProfile.from_json(core.profile).size == 3
    with session_scope(engine) as session:  # the new story is in the clusterer's index
        keys = session.exec(
            select(StoryIndexEntry.key).where(StoryIndexEntry.story_id == new)
        ).all()
        assert "en|e:kestrel" in keys

    _assert_a_second_pass_changes_nothing(engine, settings)


def test_a_story_of_two_fires_of_one_kind_is_divided_by_town(
    engine: Engine, settings: Settings
) -> None:
    """Agglomerative splitting keeps the two fires together (their reports share everything but
    the town); the twin rule divides them, and the later fire's reports leave."""
    settings = _steps_only(settings)
    reports = [*BANFIELD_FIRE, *WELBY_FIRE]
    both = _story(engine, *((f"outlet {n}", report, n) for n, report in enumerate(reports)))

    report = _repair(engine, settings)

    assert report.merged == [] and len(report.split) == 1
    ((story, new),) = report.split
    assert story == both
    assert _members(engine, both) == [title for title, _ in BANFIELD_FIRE]
    assert _members(engine, new) == [title for title, _ in WELBY_FIRE]
    assert "welby" in _row(engine, new).keywords and "welby" not in _row(engine, both).keywords
    _assert_a_second_pass_changes_nothing(engine, settings)


def test_stories_outside_the_window_are_left_alone(engine: Engine, settings: Settings) -> None:
    _story(engine, ("wire", STRIKE, 0), ("ledger", STRIKE_OTHER, 1))
    _story(engine, ("gazette", STRIKE_THIRD, 2))
    before = _snapshot(engine)
    with session_scope(engine) as session:
        report = pipeline.repair_stories(session=session, settings=settings, now=NOW + 80 * HOUR)
    assert report == pipeline.RepairReport()
    assert _snapshot(engine) == before


def test_merged_story_ids_keep_answering(engine: Engine, settings: Settings) -> None:
    larger = _story(engine, ("wire", STRIKE, 0), ("ledger", STRIKE_OTHER, 1))
    smaller = _story(engine, ("gazette", STRIKE_THIRD, 2))
    earlier = _story(engine, ("science", COMET, 1))
    with session_scope(engine) as session:  # merged into `smaller` by an earlier repair
        row = session.get(Story, earlier)
        assert row is not None
        row.merged_into_id = smaller
    assert _repair(engine, settings).merged == [(smaller, larger)]

    with TestClient(create_app(settings)) as client:
        for merged in (smaller, earlier):
            answer = client.get(f"/stories/{merged}", follow_redirects=False)
            assert answer.status_code == 308
            assert answer.headers["location"] == f"/stories/{larger}"
        followed = client.get(f"/stories/{smaller}")
        assert followed.status_code == 200 and followed.json()["id"] == larger
        assert len(followed.json()["articles"]) == 3
        assert client.get(f"/stories/{larger}", follow_redirects=False).status_code == 200
        assert client.get("/stories/999999").status_code == 404


def test_survivor_lookup_follows_chains_of_merges(engine: Engine) -> None:
    ids = [_story(engine, ("wire", (f"Report {n} " * 3, STRIKE[1]), n)) for n in range(3)]
    with session_scope(engine) as session:
        for child, parent in itertools.pairwise(ids):
            row = session.get(Story, child)
            assert row is not None
            row.merged_into_id = parent
    with session_scope(engine) as session:
        found = [store.story_survivor(session=session, story_id=i) for i in ids]
        assert [s.id if s else None for s in found] == [ids[2]] * 3
        assert store.story_survivor(session=session, story_id=999999) is None


def test_repair_task_runs_on_the_clustering_queue_every_half_hour(
    engine: Engine, settings: Settings
) -> None:
    config = celery_config(settings)
    assert config["task_routes"]["workers.tasks.repair_stories"] == {"queue": "clustering"}
    entry = config["beat_schedule"]["repair-stories"]
    assert (entry["task"], entry["schedule"]) == ("workers.tasks.repair_stories", 1800.0)
    _story(engine, ("wire", STRIKE, 0), ("ledger", STRIKE_OTHER, 1))
    _story(engine, ("gazette", STRIKE_THIRD, 2))
    wide = settings.model_copy(update={"cluster_repair_window_hours": 10 * 365 * 24.0})
    use_runtime(build_runtime(wide))  # the task's clock is today's: NOW must be in its window
    try:
        assert tasks.repair_stories() == 2  # one article regrouped, its story emptied
        assert tasks.repair_stories() == 0
    finally:
        use_runtime(None)


def test_repair_command_repairs_now_and_says_what_it_changed(
    engine: Engine, run: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    larger = _story(engine, ("wire", STRIKE, 0), ("ledger", STRIKE_OTHER, 1))
    smaller = _story(engine, ("gazette", STRIKE_THIRD, 2))
    # the command's clock is today's: NOW must be in its window
    monkeypatch.setenv("AGGREGATOR_CLUSTER_REPAIR_WINDOW_HOURS", str(10 * 365 * 24))

    first = run("repair")
    again = run("repair")

    assert first.exit_code == 0
    assert first.output.splitlines() == [
        f"story #{smaller} merged into #{larger}",
        f"story #{larger}: new headline {_row(engine, larger).headline!r}",
        "articles regrouped 1, merged 1, split 0, lone articles moved 0, new headlines 1",
    ]
    assert again.output.splitlines() == [
        "articles regrouped 0, merged 0, split 0, lone articles moved 0, new headlines 0"
    ]
    assert _row(engine, smaller).merged_into_id == larger


def test_a_lone_article_moves_to_the_story_it_would_join_now(
    engine: Engine, settings: Settings
) -> None:
    """The first report came two days before the others, which started a story of their own;
    the merge rules leave stories that far apart alone, the model moves the lone report."""
    settings = _steps_only(settings)
    lone = _story(engine, ("gazette", STRIKE_THIRD, -47))
    larger = _story(engine, ("wire", STRIKE, 0), ("ledger", STRIKE_OTHER, 1))
    comet = _story(engine, ("science", COMET, 1))

    report = _repair(engine, settings)

    assert report.rejoined == [(lone, larger)] and report.merged == report.split == []
    assert _members(engine, larger) == [STRIKE_THIRD[0], STRIKE[0], STRIKE_OTHER[0]]
    story = _row(engine, larger)
    assert (story.article_count, story.source_count) == (3, 3)
    assert story.first_seen == NOW - 47 * HOUR
    assert _row(engine, lone).merged_into_id == larger
    assert _members(engine, comet) == [COMET[0]]  # a lone article with no better home stays
    with session_scope(engine) as session:
        survivor = store.story_survivor(session=session, story_id=lone)
        assert survivor is not None and survivor.id == larger
    _assert_a_second_pass_changes_nothing(engine, settings)


def test_a_lone_article_stays_if_another_model_would_not_move_it(
    engine: Engine, settings: Settings
) -> None:
    settings = _steps_only(settings)
    lone = _story(engine, ("gazette", STRIKE_THIRD, -47))
    _story(engine, ("wire", STRIKE, 0), ("ledger", STRIKE_OTHER, 1))
    strict = replace(load_default_model(), threshold=0.999)
    with session_scope(engine) as session:
        report = pipeline.repair_stories(
            session=session, settings=settings, now=NOW + 6 * HOUR, model=strict
        )
    assert report.rejoined == []
    assert _row(engine, lone).merged_into_id is None


@pytest.mark.parametrize("first", [STRIKE, STRIKE_OTHER, STRIKE_THIRD])
def test_repair_elects_the_most_central_title_whatever_came_first(
    engine: Engine, settings: Settings, first: tuple[str, str]
) -> None:
    # The third report tells what the two others tell, each of them only a part of it.
    others = [r for r in (STRIKE, STRIKE_OTHER, STRIKE_THIRD) if r is not first]
    reports = [("wire", first, 0), ("ledger", others[0], 1), ("gazette", others[1], 2)]
    story = _story(engine, *reports)
    assert _row(engine, story).headline == first[0]  # as streaming leaves it

    expected = [] if first is STRIKE_THIRD else [story]
    assert _repair(engine, settings) == pipeline.RepairReport(headlines=expected)
    assert _row(engine, story).headline == STRIKE_THIRD[0]

    before = _snapshot(engine)
    _repair(engine, settings)
    assert _snapshot(engine) == before


def test_regrouping_undoes_a_wrong_join_and_a_split_event(
    engine: Engine, settings: Settings
) -> None:
    """Streaming put the first comet report into the strike story and started stories for the
    second strike and the second comet report; regrouping all four makes the two events the
    stories. The story holding most of each group keeps it; the emptied one redirects."""
    mixed = _story(engine, ("wire", STRIKE, 0), ("science", COMET, 1))
    strike = _story(engine, ("ledger", STRIKE_OTHER, 1))
    comet = _story(engine, ("observer", COMET_OTHER, 2))

    report = _repair(engine, settings)

    groups = sorted(
        sorted(_members(engine, i)) for i in (mixed, strike, comet) if _members(engine, i)
    )
    assert groups == sorted(
        [sorted([STRIKE[0], STRIKE_OTHER[0]]), sorted([COMET[0], COMET_OTHER[0]])]
    )
    assert _members(engine, mixed) == [STRIKE[0], STRIKE_OTHER[0]]  # the first group keeps it
    assert _members(engine, comet) == [COMET[0], COMET_OTHER[0]]
    assert report.merged == [(strike, mixed)] and report.split == []
    assert sorted(story for _, story in report.regrouped) == [mixed, comet]
    assert _row(engine, strike).merged_into_id == mixed
    assert (_row(engine, comet).article_count, _row(engine, comet).first_seen) == (2, NOW + HOUR)
    assert (
        "kestrel" in _row(engine, comet).keywords and "kestrel" not in _row(engine, mixed).keywords
    )
    _assert_a_second_pass_changes_nothing(engine, settings)


def test_regrouping_leaves_stories_that_began_before_the_window(
    engine: Engine, settings: Settings
) -> None:
    """A story with reports from before the window keeps them and the later ones streaming
    joined to it; a new report of its event reaches it through the repair's other steps."""
    old = _story(engine, ("wire", STRIKE, -100), ("ledger", STRIKE_OTHER, 1))
    follow_up = _story(engine, ("gazette", STRIKE_THIRD, 2))
    comet = _story(engine, ("science", COMET, 2))

    report = _repair(engine, settings)

    assert report.regrouped == [] and report.merged + report.rejoined == [(follow_up, old)]
    assert _members(engine, old) == [STRIKE[0], STRIKE_OTHER[0], STRIKE_THIRD[0]]
    assert _members(engine, comet) == [COMET[0]]


def test_copies_move_with_their_original_when_regrouped(engine: Engine, settings: Settings) -> None:
    strike = _story(engine, ("wire", STRIKE, 0))
    other = _story(engine, ("ledger", STRIKE_OTHER, 1))
    with session_scope(engine) as session:
        original = store.articles_in_story(session=session, story_id=other)[0]
        copy = _add(session, "reprint", (STRIKE_OTHER[0], STRIKE_OTHER[1] + " (AP)"), 2)
        copy.duplicate_of_id, copy.story_id = original.id, other
        copy_id = copy.id

    report = _repair(engine, settings)

    assert report.merged == [(other, strike)] and len(report.regrouped) == 1
    with session_scope(engine) as session:
        moved = session.get(Article, copy_id)
        assert moved is not None and moved.story_id == strike
    # three articles; the copy is no independent report, so two outlets count
    assert (_row(engine, strike).article_count, _row(engine, strike).source_count) == (3, 2)


@pytest.mark.parametrize("cap", [2, 3])
def test_regrouping_takes_the_latest_stories_that_fit_its_cap(
    engine: Engine, settings: Settings, cap: int
) -> None:
    """Three one-article stories, two of them one event: with a cap of three articles the
    regrouping joins them; with a cap of two it sees only the latest two stories (the later
    strike report and the comet), and the lone-article step joins the strike reports instead."""
    early = _story(engine, ("wire", STRIKE_OTHER, 0))
    late = _story(engine, ("ledger", STRIKE, 3))
    _story(engine, ("science", COMET, 4))
    capped = settings.model_copy(update={"cluster_regroup_max_articles": cap})

    report = _repair(engine, capped)

    assert len(report.regrouped) == (1 if cap == 3 else 0)
    assert len(report.rejoined) == (0 if cap == 3 else 1)
    survivor = early if _members(engine, early) else late
    assert sorted(_members(engine, survivor)) == sorted([STRIKE[0], STRIKE_OTHER[0]])


def test_regrouping_divides_a_story_of_two_fires_of_one_kind(
    engine: Engine, settings: Settings
) -> None:
    """The model, asked about every pair at once, keeps each town's reports together."""
    both = _story(
        engine, *((f"outlet {n}", r, n) for n, r in enumerate([*BANFIELD_FIRE, *WELBY_FIRE]))
    )

    report = _repair(engine, settings)

    assert report.merged == [] and len(report.split) == 1 and len(report.regrouped) == 3
    ((story, new),) = report.split
    assert story == both
    assert _members(engine, both) == [title for title, _ in BANFIELD_FIRE]
    assert _members(engine, new) == [title for title, _ in WELBY_FIRE]
    _assert_a_second_pass_changes_nothing(engine, settings)


def test_regrouping_joins_nothing_for_a_model_that_would_not(
    engine: Engine, settings: Settings
) -> None:
    larger = _story(engine, ("wire", STRIKE, 0), ("ledger", STRIKE_OTHER, 1))
    smaller = _story(engine, ("gazette", STRIKE_THIRD, 2))
    strict = replace(load_default_model(), threshold=0.999, regroup_threshold=0.999)
    with session_scope(engine) as session:
        report = pipeline.repair_stories(
            session=session, settings=settings, now=NOW + 6 * HOUR, model=strict
        )
    assert report.regrouped == [] and report.rejoined == []
    # the merge rules, which need no model, leave the regrouped stories as regrouping left them
    assert report.merged == []
    assert (_members(engine, larger), _members(engine, smaller)) == (
        [STRIKE[0], STRIKE_OTHER[0]],
        [STRIKE_THIRD[0]],
    )
