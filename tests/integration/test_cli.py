"""The `aggregator` command's source and store commands, on a real store."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import inspect

from aggregator.db import make_engine
from tests.conftest import Invoke


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
