"""`aggregator demo` as a user runs it: a subprocess, a fresh data folder, the real pipeline."""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
import sys
from pathlib import Path

from sqlmodel import select

from aggregator.db import make_engine, session_scope
from aggregator.models import Article, Source
from tests.demo_corpus import (
    GOLD,
    MENTIONED_EVENTS,
    SEED_STORY,
    SEED_URL,
    WIRE_COPY,
    WIRE_ORIGINAL,
    urls_of,
)

AGGREGATOR = Path(sys.executable).parent / "aggregator"


def _run(args: list[str], cwd: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    env |= {"AGGREGATOR_DATA_DIR": str(cwd / "data"), "AGGREGATOR_DATABASE_URL": database_url}
    return subprocess.run(
        [str(AGGREGATOR), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def _articles_by_corpus_url(database_url: str) -> dict[str, Article]:
    """Each stored demo article, keyed by its URL in the corpus (before the origin rewrite)."""
    engine = make_engine(database_url)
    with session_scope(engine) as session:
        assert len(session.exec(select(Source)).all()) == 7
        by_path = {_path(a.url): a for a in session.exec(select(Article)).all()}
    engine.dispose()
    return {url: by_path[_path(url)] for url in GOLD}


def _path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def test_demo_builds_the_gold_stories(tmp_path: Path, database_url: str) -> None:
    result = _run(["demo"], tmp_path, database_url)
    assert result.returncode == 0, result.stderr
    found = re.search(r"pairwise precision [\d.]+, recall [\d.]+, F1 ([\d.]+)", result.stdout)
    assert found, result.stdout
    f1 = float(found[1])
    assert f1 >= 0.9
    assert "Alpine Courier" in result.stderr  # progress, one line per outlet

    articles = _articles_by_corpus_url(database_url)
    story_of = {url: article.story_id for url, article in articles.items()}
    seed_story = story_of[SEED_URL]
    assert seed_story is not None
    # the widest story, listed first, is the seed's, headed by the title of one of its reports
    seed_titles = {articles[url].title for url in urls_of(SEED_STORY)}
    first_headline = re.search(r"^#\d+ (.+)$", result.stdout, re.MULTILINE)[1]  # type: ignore[index]
    assert first_headline in seed_titles
    # the seed, its independent reports and the wire copy share one story, and nothing else joins
    assert {url for url, s in story_of.items() if s == seed_story} == urls_of(SEED_STORY)
    assert story_of[WIRE_COPY] == story_of[WIRE_ORIGINAL] == seed_story
    assert articles[WIRE_COPY].duplicate_of_id == articles[WIRE_ORIGINAL].id
    assert [url for url, a in articles.items() if a.duplicate_of_id] == [WIRE_COPY]
    # each event the seed only mentions is a story of its own
    for event in MENTIONED_EVENTS:
        (story,) = {story_of[url] for url in urls_of(event)}
        assert story is not None and story != seed_story
        assert {url for url, s in story_of.items() if s == story} == urls_of(event)

    _assert_demo_digest(tmp_path / "demo-digest.eml", seed_titles)

    listing = _run(["stories", "--limit", "50"], tmp_path, database_url)
    assert listing.returncode == 0
    stored_stories = {story for story in story_of.values() if story is not None}
    assert listing.stdout.count("\n#") + 1 == len(stored_stories) >= len(set(GOLD.values())) - 1


def test_demo_refuses_a_store_with_other_data(tmp_path: Path, sqlite_url: str) -> None:
    assert (
        _run(
            ["sources", "add", "https://feeds.example.org/rss", "--no-discover"],
            tmp_path,
            sqlite_url,
        ).returncode
        == 0
    )
    refused = _run(["demo"], tmp_path, sqlite_url)
    assert refused.returncode != 0
    assert "--reset" in refused.stderr
    assert "feeds.example.org" in _run(["sources", "list"], tmp_path, sqlite_url).stdout

    assert _run(["demo", "--reset"], tmp_path, sqlite_url).returncode == 0
    assert "feeds.example.org" not in _run(["sources", "list"], tmp_path, sqlite_url).stdout
    # a previous demo's data is not "other data": the demo runs again without --reset
    again = _run(["demo"], tmp_path, sqlite_url)
    assert again.returncode == 0, again.stderr
    listed = _run(["sources", "list", "--json"], tmp_path, sqlite_url).stdout.splitlines()
    assert len(listed) == 7


def _assert_demo_digest(file: Path, seed_titles: set[str]) -> None:
    """The demo day's digest, written where the user ran the demo: a mail with both parts that
    carries the seed's story (its headline: one of its articles' titles). It need not lead: the
    corpus's newest stories are a day younger, and a digest's score halves every 24 hours."""
    message = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert message["Message-ID"] and message["List-Unsubscribe"]
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert any(f". {title}\n" in text.get_content() for title in seed_titles)
    assert "<script" not in html.get_content().lower()
