"""The `aggregator` command's source and store commands, on a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import inspect

from aggregator.db import make_engine
from tests.conftest import FixtureSite, Invoke
from tests.integration.test_pipeline import COMET, STRIKE
from tests.pages import article_page, rss_feed


def test_db_upgrade_creates_the_schema(run: Invoke, database_url: str) -> None:
    result = run("db", "upgrade")
    assert result.exit_code == 0
    assert "articles" in inspect(make_engine(database_url)).get_table_names()


def test_sources_add_list_and_refuse_bad_urls(run: Invoke) -> None:
    assert (
        "added"
        in run("sources", "add", "https://a.example/rss", "--title", "A", "--no-discover").output
    )
    assert "exists" in run("sources", "add", "https://a.example/rss", "--no-discover").output
    bad = run("sources", "add", "file:///etc/passwd")
    assert bad.exit_code == 2 and "not an http(s) feed URL" in bad.output
    (line,) = run("sources", "list", "--json").output.splitlines()
    listed = json.loads(line)
    assert listed["url"] == "https://a.example/rss" and listed["title"] == "A"
    assert {"health", "last_error", "consecutive_errors", "next_poll_at"} <= listed.keys()


def test_import_the_shipped_list_and_round_trip_through_opml(run: Invoke, tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "config" / "sources.toml"
    imported = run("sources", "import", str(shipped))
    assert imported.exit_code == 0 and imported.output.count("added") >= 20
    opml = tmp_path / "out.opml"
    assert run("sources", "export", "--opml", "-o", str(opml)).exit_code == 0
    again = run("sources", "import", str(opml))
    assert again.output.count("exists") == imported.output.count("added")
    assert "added" not in again.output


def test_import_of_a_broken_file_says_why(run: Invoke, tmp_path: Path) -> None:
    broken = tmp_path / "broken.opml"
    broken.write_text("<opml><body><outline xmlUrl='https://a.example/rss'>")
    result = run("sources", "import", str(broken))
    assert result.exit_code == 1 and "invalid OPML" in result.output
    assert run("sources", "list").output == ""


def test_stories_on_an_empty_store(run: Invoke) -> None:
    result = run("stories", "--json")
    assert result.exit_code == 0 and result.output == ""


def test_sources_poll_makes_a_source_due_and_crawl_polls_it(
    run: Invoke, site: FixtureSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGGREGATOR_FETCH_ALLOW_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("AGGREGATOR_RETENTION_DAYS", "36500")  # the fixture feed is dated 2025
    site.serve("/strike", article_page("Missile strike wounds six", STRIKE))
    feed = site.serve("/feed.xml", rss_feed("Wire", [("s", site.url("/strike"), "Strike")]))
    assert run("sources", "add", feed, "--no-discover").exit_code == 0
    assert "polled 1 sources, 1 new articles" in run("crawl").output
    assert "polled 0 sources" in run("crawl").output  # polled: not due again for a while
    site.serve("/comet", article_page("Astronomers spot comet on unusual orbit", COMET))
    site.serve(
        "/feed.xml",
        rss_feed("Wire", [("s", site.url("/strike"), "Strike"), ("c", site.url("/comet"), "C")]),
    )
    (listed,) = run("sources", "list", "--json").output.splitlines()
    source = json.loads(listed)
    unknown = run("sources", "poll", str(source["id"]), "999")
    assert unknown.exit_code == 1 and "no such source: #999" in unknown.output
    assert "polled 0 sources" in run("crawl").output  # the failed command changed nothing
    due = run("sources", "poll", str(source["id"]))
    assert due.exit_code == 0 and f"due now  #{source['id']}  {feed}" in due.output
    assert "polled 1 sources, 1 new articles" in run("crawl").output
    assert site.hits.count("/feed.xml") == 2 and site.hits.count("/comet") == 1
