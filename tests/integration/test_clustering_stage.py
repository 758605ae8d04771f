"""The clustering stage on a real store: near-duplicates, wall pages, persistence, eval-clusters."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from aggregator import pipeline, store
from aggregator.cli import main
from aggregator.cluster_eval import article_for_row, evaluate_rows
from aggregator.cluster_store import SqlClusterState
from aggregator.clustering import ClusterModel, load_default_model
from aggregator.clustering.background import Background
from aggregator.db import make_engine, session_scope
from aggregator.models import Article, ExtractionStatus, Story, StoryIndexEntry
from aggregator.settings import Settings
from tests.stored import NOW, add_extracted_article
from tests.twin_events import BANFIELD_FIRE, WELBY_FIRE

STRIKE = (
    "A Russian missile struck the city of Kryvyi Rih overnight, wounding six people including a "
    "three-year-old girl, regional officials said. More than forty residential buildings, a school "
    "and gas pipelines were damaged in the attack on the industrial city, according to the head of "
    "the regional military administration, Serhiy Lysak. Rescue crews worked through the night."
)
STRIKE_OTHER = (
    "Six people were wounded when a Russian missile hit residential districts of Kryvyi Rih in "
    "central Ukraine, among them a girl aged three, governor Serhiy Lysak reported. A school, gas "
    "pipes and over forty apartment buildings in Kryvyi Rih were damaged, officials said."
)
COMET = (
    "Astronomers at the Kestrel observatory have identified a faint comet on an unusual orbit that "
    "will bring it close to the inner solar system late next year. The object, named Tamura-Holm, "
    "was spotted in survey images taken over three nights and confirmed by two other telescopes."
)


def _add(engine: Engine, source: str, title: str, text: str, hours: int = 0) -> int:
    with session_scope(engine) as session:
        return add_extracted_article(session, source, title, text, hours=hours).id or 0


def _cluster(engine: Engine, settings: Settings, article_id: int) -> int | None:
    with session_scope(engine) as session:
        return pipeline.cluster_article(article_id, session=session, settings=settings, now=NOW)


def _article(engine: Engine, article_id: int) -> Article:
    with session_scope(engine) as session:
        article = session.get(Article, article_id)
        assert article is not None
        return article


def test_wire_copy_is_a_duplicate_in_its_originals_story(
    engine: Engine, settings: Settings
) -> None:
    original = _add(engine, "wire", "Missile strike wounds six in Kryvyi Rih", STRIKE)
    copy = _add(
        engine,
        "gazette",
        "Kryvyi Rih: six hurt",
        "From the wire. " + STRIKE.replace("overnight", "on Thursday night"),
        2,
    )
    other = _add(
        engine, "ledger", "Girl among wounded in Kryvyi Rih missile attack", STRIKE_OTHER, 3
    )
    comet = _add(engine, "science", "Comet on unusual orbit spotted", COMET, 4)
    story = _cluster(engine, settings, original)
    assert story is not None
    assert _cluster(engine, settings, copy) == story
    assert _cluster(engine, settings, other) == story
    assert _cluster(engine, settings, comet) not in (None, story)
    assert _article(engine, copy).duplicate_of_id == original
    assert _article(engine, other).duplicate_of_id is None
    with session_scope(engine) as session:
        row = session.get(Story, story)
        assert row is not None
        assert (row.article_count, row.source_count) == (3, 2)  # the copy counts once
        assert "kryvyi" in row.keywords
        assert row.headline in {
            "Missile strike wounds six in Kryvyi Rih",
            "Girl among wounded in Kryvyi Rih missile attack",
        }


def test_copy_clustered_before_its_original_joins_when_the_original_does(
    engine: Engine, settings: Settings
) -> None:
    original = _add(engine, "wire", "Missile strike wounds six in Kryvyi Rih", STRIKE)
    copy = _add(engine, "gazette", "Kryvyi Rih: six hurt", STRIKE, 1)
    with session_scope(engine) as session:  # the fetch stage marks exact copies
        article = session.get(Article, copy)
        assert article is not None
        article.duplicate_of_id = original
    assert _cluster(engine, settings, copy) is None
    story = _cluster(engine, settings, original)
    assert _article(engine, copy).story_id == story is not None


def test_wall_pages_never_start_or_join_a_story(engine: Engine, settings: Settings) -> None:
    wall = _add(
        engine,
        "paper",
        "Subscribe to read",
        "Subscribe now to continue reading. Already a subscriber? Sign in here.",
    )
    assert _cluster(engine, settings, wall) is None
    article = _article(engine, wall)
    assert article.extraction_status == ExtractionStatus.BOILERPLATE
    assert article.story_id is None and "not an article" in (article.fetch_error or "")


WALL_TITLE = "Subscribe to read"
WALL_TEXT = "Subscribe now to continue reading. Already a subscriber? Sign in here."


def _mark_copy(engine: Engine, copy: int, original: int) -> None:
    """Mark an article an exact copy of the original, as the fetch stage does."""
    with session_scope(engine) as session:
        article = session.get(Article, copy)
        assert article is not None
        article.duplicate_of_id = original
        article.extraction_status = ExtractionStatus.DUPLICATE.value


def _copy_of(engine: Engine, source: str, original: int, hours: int) -> int:
    """An exact copy of the wall page from another outlet."""
    copy = _add(engine, source, WALL_TITLE, WALL_TEXT, hours)
    _mark_copy(engine, copy, original)
    return copy


def _stalled(engine: Engine) -> list[int]:
    with session_scope(engine) as session:
        later = NOW + timedelta(days=30)
        to_fetch, to_cluster = store.stalled_article_ids(session=session, before=later, limit=100)
        return to_fetch + to_cluster


def test_copies_of_a_wall_page_are_walls_too_whichever_is_clustered_first(
    engine: Engine, settings: Settings
) -> None:
    wall = _add(engine, "paper", WALL_TITLE, WALL_TEXT)
    early_copy = _copy_of(engine, "gazette", wall, 1)
    assert _cluster(engine, settings, early_copy) is None  # its original has no verdict yet
    assert _cluster(engine, settings, wall) is None
    late_copy = _copy_of(engine, "ledger", wall, 2)
    assert _cluster(engine, settings, late_copy) is None
    for copy in (early_copy, late_copy):
        article = _article(engine, copy)
        assert article.extraction_status == ExtractionStatus.BOILERPLATE
        assert article.story_id is None and f"copy of article {wall}" in (article.fetch_error or "")
    assert _stalled(engine) == []  # settled: the sweep never sends them again


def test_state_survives_a_restart(engine: Engine, settings: Settings, database_url: str) -> None:
    first = _cluster(
        engine, settings, _add(engine, "wire", "Missile strike wounds six in Kryvyi Rih", STRIKE)
    )
    engine.dispose()
    restarted = make_engine(database_url)
    second = _cluster(
        restarted,
        settings,
        _add(restarted, "ledger", "Girl among wounded in Kryvyi Rih attack", STRIKE_OTHER, 5),
    )
    assert first == second is not None
    with session_scope(restarted) as session:
        assert (
            session.exec(select(StoryIndexEntry).where(StoryIndexEntry.story_id == first)).first()
            is not None
        )
    restarted.dispose()


def test_background_statistics_persist(engine: Engine) -> None:
    background = Background.default().updated([dict.fromkeys(Background.default().means, 0.4)])
    with session_scope(engine) as session:
        state = SqlClusterState(session, now=NOW)
        assert state.background() is None
        state.save_background(Background.default())
        state.save_background(background)  # replaces, does not add up
    with session_scope(engine) as session:
        stored = SqlClusterState(session, now=NOW).background()
    assert stored is not None
    for name, value in background.means.items():
        assert stored.means[name] == pytest.approx(value, abs=1e-6)
        assert stored.squares[name] == pytest.approx(background.squares[name], abs=1e-6)


def test_clustering_twice_changes_nothing(engine: Engine, settings: Settings) -> None:
    article = _add(engine, "wire", "Missile strike wounds six in Kryvyi Rih", STRIKE)
    story = _cluster(engine, settings, article)
    assert _cluster(engine, settings, article) == story
    with session_scope(engine) as session:
        row = session.get(Story, story)
        assert row is not None and row.article_count == 1


def test_eval_clusters_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {
            "id": "a1",
            "story": "strike",
            "published": "2025-12-04",
            "source": "wire",
            "url": "",
            "title": "Missile strike wounds six in Kryvyi Rih",
            "text": STRIKE,
        },
        {
            "id": "a2",
            "story": "strike",
            "published": "2025-12-04",
            "source": "ledger",
            "url": "",
            "title": "Girl among wounded in Kryvyi Rih missile attack",
            "text": STRIKE_OTHER,
        },
        {
            "id": "a3",
            "story": "comet",
            "published": "2025-12-05",
            "source": "science",
            "url": "",
            "title": "Comet on unusual orbit spotted",
            "text": COMET,
        },
    ]
    report, predicted = _eval_clusters_command(rows, tmp_path, monkeypatch)
    assert report["articles"] == 3 and report["stories"] == 2
    assert report["pairwise_f1"] == report["bcubed_f1"] == 1.0
    assert {
        "pairwise_precision",
        "pairwise_recall",
        "bcubed_precision",
        "bcubed_recall",
        "seconds",
        "articles_per_second",
    } <= report.keys()
    assert list(predicted) == ["a1", "a2", "a3"]
    assert predicted["a1"] == predicted["a2"] != predicted["a3"]


def _eval_clusters_command(
    rows: list[dict[str, Any]], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, str]]:
    """`aggregator eval-clusters FILE --predictions OUT` on the rows: its report, and the
    cluster of each row id in the order written."""
    labelled = folder / "labelled.jsonl"
    labelled.write_text("".join(json.dumps(row) + "\n" for row in rows))
    predictions = folder / "predicted.jsonl"
    monkeypatch.chdir(folder)
    result = CliRunner().invoke(
        main, ["eval-clusters", str(labelled), "--predictions", str(predictions)]
    )
    assert result.exit_code == 0, result.output
    lines = map(json.loads, predictions.read_text().splitlines())
    return json.loads(result.output), {line["id"]: line["cluster"] for line in lines}


def test_eval_clusters_scores_the_stories_as_the_repair_pass_leaves_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two undated fires of one kind stream into one story; the repair pass, which production
    runs every half hour and eval-clusters after the stream, divides it by town."""
    reports = [("banfield", report) for report in BANFIELD_FIRE]
    reports += [("welby", report) for report in WELBY_FIRE]
    rows = [
        {
            "id": f"a{n}",
            "story": town,
            "published": None,
            "source": f"outlet {n}",
            "title": title,
            "text": text,
        }
        for n, (town, (title, text)) in enumerate(reports)
    ]
    report, predicted = _eval_clusters_command(rows, tmp_path, monkeypatch)
    assert report["pairwise_f1"] == 1.0
    assert len({predicted[f"a{n}"] for n in range(3)}) == 1
    assert len({predicted[f"a{n}"] for n in range(3, 6)}) == 1
    assert predicted["a0"] != predicted["a3"]


def test_eval_clusters_runs_the_repair_pass_as_beat_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every half hour of the stream's time (once per gap between dated rows that long or
    longer) and once after the last row."""
    times: list[datetime] = []
    original = pipeline.repair_stories

    def recording(
        *, session: Session, settings: Settings, now: datetime, model: ClusterModel | None
    ) -> pipeline.RepairReport:
        times.append(now)
        return original(session=session, settings=settings, now=now, model=model)

    monkeypatch.setattr(pipeline, "repair_stories", recording)
    dated = [
        {
            "id": "a",
            "story": "s",
            "published": "2025-12-04",
            "title": "Missile strike",
            "text": STRIKE,
        },
        {
            "id": "b",
            "story": "s",
            "published": "2025-12-04",
            "title": "Strike",
            "text": STRIKE_OTHER,
        },
        {"id": "c", "story": "t", "published": "2025-12-06", "title": "Comet", "text": COMET},
    ]
    evaluate_rows(dated, Settings(_env_file=None))
    half_hour = timedelta(minutes=30)
    assert times == [
        datetime(2025, 12, 4, tzinfo=UTC) + half_hour,
        datetime(2025, 12, 6, tzinfo=UTC) + half_hour,
    ]


def test_eval_rows_can_score_another_model_than_the_shipped_one() -> None:
    """What leave-one-file-out needs: the held-out file scored by the production path with a
    model trained without it. A model whose threshold no score reaches starts a story per row."""
    rows = [
        {"id": "a", "story": "s", "title": "Missile strike", "text": STRIKE},
        {"id": "b", "story": "s", "title": "Strike", "text": STRIKE_OTHER},
    ]
    settings = Settings(_env_file=None)
    shipped, _ = evaluate_rows(rows, settings)
    assert shipped["stories"] == 1
    never = replace(load_default_model(), threshold=1.01, regroup_threshold=1.01)
    report, predicted = evaluate_rows(rows, settings, never)
    assert report["stories"] == 2 and predicted["a"] != predicted["b"]


@pytest.mark.parametrize(
    ("language", "title", "text", "expected"),
    [
        (None, "Missile strike wounds six", STRIKE, "en"),
        (
            None,
            "Raketenangriff",
            "Eine russische Rakete traf in der Nacht die Stadt Krywyj Rih "
            "und verletzte sechs Menschen, darunter ein dreijähriges Mädchen, wie die Behörden "
            "mitteilten. Mehr als vierzig Wohnhäuser und eine Schule wurden beschädigt.",
            "de",
        ),
        ("fr", "Missile strike wounds six", STRIKE, "fr"),
    ],
)
def test_eval_rows_get_the_language_extraction_would_detect(
    language: str | None, title: str, text: str, expected: str
) -> None:
    row = {"id": "a1", "story": "s", "title": title, "text": text, "language": language}
    assert article_for_row(row, source_id=1).language == expected


def test_eval_clusters_refuses_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a1", "title": ')
    result = CliRunner().invoke(main, ["eval-clusters", str(broken)])
    assert result.exit_code == 1 and "not a labelled JSONL file" in result.output


def test_eval_clusters_names_the_line_that_lacks_a_label(tmp_path: Path) -> None:
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text(
        '{"id": "a1", "story": "s", "title": "t", "text": "x"}\n{"id": "a2", "title": "t", "text": "x"}\n'
    )
    result = CliRunner().invoke(main, ["eval-clusters", str(unlabelled)])
    assert result.exit_code == 1 and "line 2 lacks story" in result.output


def _cluster_in_turn(engine: Engine, settings: Settings, article_id: int) -> int:
    """Step the clustering consumer for one article as its task does; returns the steps taken."""
    for steps in range(1, 100):
        with session_scope(engine) as session:
            step = pipeline.cluster_next(article_id, session=session, settings=settings, now=NOW)
        if step.done:
            return steps
    raise AssertionError("the clustering consumer never reached its article")


def _story_order(engine: Engine, *article_ids: int) -> list[int]:
    stories = [_article(engine, article_id).story_id for article_id in article_ids]
    assert None not in stories
    return [story or 0 for story in stories]


def test_the_backlog_is_clustered_in_publication_order(engine: Engine, settings: Settings) -> None:
    # Fetched newest first, as one feed lists them; a later-published unrelated article waits.
    comet = _add(engine, "science", "Comet on unusual orbit spotted", COMET, 5)
    strike = _add(engine, "wire", "Missile strike wounds six in Kryvyi Rih", STRIKE, 1)
    later = _add(engine, "ledger", "Girl among wounded in Kryvyi Rih", STRIKE_OTHER, 9)
    assert _cluster_in_turn(engine, settings, comet) == 2  # the strike first, then the comet
    strike_story, comet_story = _story_order(engine, strike, comet)
    assert strike_story < comet_story  # created in publication order
    assert _article(engine, later).story_id is None  # published after: not its turn yet
    assert _cluster_in_turn(engine, settings, strike) == 1  # done already: nothing to do
    assert _cluster_in_turn(engine, settings, later) == 1
    assert _article(engine, later).story_id == strike_story


def test_an_article_the_clusterer_fails_on_is_recorded_and_the_backlog_goes_on(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = _add(engine, "wire", "Missile strike wounds six in Kryvyi Rih", STRIKE, 1)
    copy = _add(engine, "gazette", "Missile strike wounds six in Kryvyi Rih", STRIKE, 2)
    _mark_copy(engine, copy, broken)
    comet = _add(engine, "science", "Comet on unusual orbit spotted", COMET, 5)
    cluster_locked = pipeline._cluster_locked

    def failing_on_broken(article_id: int, **kwargs: object) -> int | None:
        if article_id == broken:
            raise ValueError("no vectors for this text")
        return cluster_locked(article_id, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "_cluster_locked", failing_on_broken)
    assert _cluster_in_turn(engine, settings, comet) == 2
    failed = _article(engine, broken)
    assert failed.extraction_status == ExtractionStatus.FAILED.value
    assert failed.story_id is None
    assert failed.fetch_error == "clustering failed: ValueError: no vectors for this text"
    assert _article(engine, comet).story_id is not None
    assert _cluster_in_turn(engine, settings, broken) == 1  # settled: not clustered again
    settled_copy = _article(engine, copy)  # and its copy with it, instead of waiting for a story
    assert settled_copy.extraction_status == ExtractionStatus.FAILED.value
    assert settled_copy.fetch_error == f"copy of article {broken}: {failed.fetch_error}"
    assert _stalled(engine) == []


def test_clustering_waits_for_an_earlier_article_still_being_fetched(
    engine: Engine, settings: Settings
) -> None:
    comet = _add(engine, "science", "Comet on unusual orbit spotted", COMET, 5)
    with session_scope(engine) as session:
        earlier = add_extracted_article(session, "wire", "Strike in Kryvyi Rih", STRIKE, hours=1)
        earlier.extraction_status = ExtractionStatus.PENDING.value  # its fetch is under way
        earlier.discovered_at = NOW + timedelta(hours=5)  # found by the same poll as the comet
        earlier_id = earlier.id or 0
    later = NOW + timedelta(hours=5, seconds=settings.cluster_max_wait_seconds - 1)

    def step(now: datetime, *, wait: bool = True) -> pipeline.ClusterStep:
        with session_scope(engine) as session:
            return pipeline.cluster_next(
                comet, session=session, settings=settings, now=now, wait_for_fetches=wait
            )

    assert step(later) == pipeline.ClusterStep(done=False, waiting=True)
    assert _article(engine, comet).story_id is None
    assert step(later, wait=False).done  # the in-process crawl, after all its fetches
    assert _article(engine, comet).story_id is not None
    assert _article(engine, earlier_id).story_id is None


def test_clustering_waits_no_longer_than_its_limit(engine: Engine, settings: Settings) -> None:
    comet = _add(engine, "science", "Comet on unusual orbit spotted", COMET, 5)
    with session_scope(engine) as session:
        stuck = add_extracted_article(session, "wire", "Strike in Kryvyi Rih", STRIKE, hours=1)
        stuck.extraction_status = ExtractionStatus.PENDING.value  # a fetch that keeps failing
    too_late = NOW + timedelta(hours=1, seconds=settings.cluster_max_wait_seconds + 1)
    with session_scope(engine) as session:
        step = pipeline.cluster_next(comet, session=session, settings=settings, now=too_late)
    assert step.done and step.story_id is not None


def test_an_overlong_word_does_not_fail_the_clustering(engine: Engine, settings: Settings) -> None:
    """cluster_terms.term holds 64 characters: a longer word (a hash, a run of Thai or Japanese
    without spaces) failed the insert on PostgreSQL, and the article was recorded as failed."""
    checksum = "a1b2c3d4" * 9
    text = f"Researchers published the checksum {checksum} of the leaked archive today. " * 4
    article_id = _add(engine, "wire", "Leaked archive checksum published", text)
    with session_scope(engine) as session:  # as the worker runs it
        pipeline.cluster_next(article_id, session=session, settings=settings, now=NOW)
    article = _article(engine, article_id)
    assert (article.extraction_status, article.fetch_error) == ("extracted", None)
    assert article.story_id is not None
