"""The HTTP API over a store filled by the real pipeline (the demo corpus)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from aggregator import store
from aggregator.api.app import create_app
from aggregator.db import session_scope, upgrade_database
from aggregator.demo import Corpus, serve_corpus
from aggregator.settings import Settings
from tests.conftest import make_test_settings, new_postgres_database
from workers.celery_app import build_runtime, runtime, use_runtime
from workers.inprocess import crawl_due_sources


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The API on a store filled once per backend by crawling the demo corpus."""
    folder = tmp_path_factory.mktemp("api")
    with ExitStack() as stack:
        if request.param == "sqlite":
            database_url = f"sqlite:///{folder / 'store.db'}"
        else:
            database_url = stack.enter_context(new_postgres_database())
        settings = make_test_settings(folder / "data", database_url)
        _fill_with_demo_corpus(settings)
        yield stack.enter_context(TestClient(create_app(settings)))


def _fill_with_demo_corpus(settings: Settings) -> None:
    use_runtime(build_runtime(settings))
    try:
        upgrade_database(runtime().engine)
        with serve_corpus(Corpus.load(), now=datetime.now(UTC)) as served:
            with session_scope(runtime().engine) as session:
                for slug, url in served.feed_urls.items():
                    store.add_source(
                        session=session, url=url, title=served.names[slug], now=datetime.now(UTC)
                    )
            crawl_due_sources()
    finally:
        use_runtime(None)


def test_health_and_story_listing(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    stories = client.get("/stories", params={"limit": 100}).json()
    assert 13 <= len(stories) <= 15  # the 14 gold stories, give or take one miss of the clusterer
    assert sum(s["article_count"] for s in stories) == 40
    widest = max(stories, key=lambda s: s["source_count"])
    assert widest["source_count"] == 6  # 7 outlets, but the wire copy is not an independent report
    assert widest["article_count"] == 7


def test_story_detail_lists_its_articles_in_time_order(client: TestClient) -> None:
    stories = client.get("/stories", params={"limit": 100}).json()
    widest = max(stories, key=lambda s: s["article_count"])
    detail = client.get(f"/stories/{widest['id']}").json()
    assert len(detail["articles"]) == widest["article_count"] == 7
    times = [a["published_at"] for a in detail["articles"]]
    assert times == sorted(times)
    assert any(
        a["title"] == "Putin says parts of US peace plan are unacceptable to Moscow"
        for a in detail["articles"]
    )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/stories/999999", 404),
        ("/stories/abc", 422),
        ("/stories?limit=0", 422),
        ("/stories?limit=101", 422),
    ],
)
def test_bad_requests_get_clear_errors(client: TestClient, path: str, status: int) -> None:
    assert client.get(path).status_code == status
