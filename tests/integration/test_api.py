"""The HTTP API over a store filled by the real pipeline (the demo corpus), on SQLite and
PostgreSQL: listings, filters, sorts, cursors, search, details, feeds and pages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import lxml.etree as etree
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from aggregator import ranking, store
from aggregator.api.app import create_app
from aggregator.db import session_scope, upgrade_database
from aggregator.demo import Corpus, serve_corpus
from aggregator.models import Article, Source, Story
from aggregator.settings import Settings
from tests.conftest import make_test_settings, new_postgres_database
from tests.demo_corpus import SEED_URL, WIRE_COPY, WIRE_ORIGINAL
from workers.celery_app import build_runtime, runtime, use_runtime
from workers.inprocess import crawl_due_sources

SORTS = ("hot", "recent", "size")


@dataclass
class Api:
    client: TestClient
    settings: Settings


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API on a store filled once per backend by crawling the demo corpus."""
    folder = tmp_path_factory.mktemp("api")
    with ExitStack() as stack:
        if request.param == "sqlite":
            database_url = f"sqlite:///{folder / 'store.db'}"
        else:
            database_url = stack.enter_context(new_postgres_database())
        settings = make_test_settings(folder / "data", database_url)
        fill_with_demo_corpus(settings)
        client = stack.enter_context(TestClient(create_app(settings)))
        yield Api(client, settings)


@pytest.fixture
def client(api: Api) -> TestClient:
    return api.client


def fill_with_demo_corpus(settings: Settings) -> None:
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


def all_stories(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/stories", params={"limit": 100, **params})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["next_cursor"] is None
    items: list[dict[str, Any]] = body["items"]
    return items


def walk(client: TestClient, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every item of a listing, page by page."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        body = client.get(path, params=query).json()
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor never ran out")


def test_stories_listing_shows_counts_outlets_and_a_representative(client: TestClient) -> None:
    stories = all_stories(client)
    assert 13 <= len(stories) <= 15  # the 14 gold stories, give or take one miss of the clusterer
    assert sum(s["article_count"] for s in stories) == 40
    widest = max(stories, key=lambda s: s["source_count"])
    assert widest["source_count"] == 6  # 7 outlets, but the wire copy is not an independent report
    assert widest["article_count"] == 7
    assert len(widest["outlets"]) == 7  # every outlet that carried it, the copy's included
    assert widest["representative"]["title"] == widest["headline"]
    assert widest["summary"] and len(widest["summary"]) <= 300
    assert widest["keywords"] and widest["url"] == f"/stories/{widest['id']}"
    assert all(s["hot"] is not None and s["hot"] > 0 for s in stories)


@pytest.mark.parametrize(
    ("sort", "key"),
    [("hot", "hot"), ("recent", "last_seen"), ("size", "article_count")],
)
def test_each_sort_orders_the_stories(client: TestClient, sort: str, key: str) -> None:
    stories = all_stories(client, sort=sort)
    values = [s[key] for s in stories]
    assert values == sorted(values, reverse=True)
    assert len(stories) >= 13


def test_hot_ranks_wide_stories_above_older_narrow_ones(client: TestClient) -> None:
    stories = all_stories(client)
    widest = max(stories, key=lambda s: s["source_count"])
    below = stories[stories.index(widest) + 1 :]
    older_narrow = [
        s for s in stories if s["source_count"] == 1 and s["last_seen"] <= widest["last_seen"]
    ]
    assert older_narrow and all(s in below for s in older_narrow)


@pytest.mark.parametrize("sort", SORTS)
def test_cursor_pages_cover_every_story_once(client: TestClient, sort: str) -> None:
    whole = all_stories(client, sort=sort)
    paged = walk(client, "/stories", 4, sort=sort)
    assert [s["id"] for s in paged] == [s["id"] for s in whole]


def test_pages_stay_correct_while_stories_arrive(api: Api) -> None:
    client = api.client
    first = client.get("/stories", params={"limit": 5, "sort": "recent"}).json()
    engine = client.app.state.engine  # type: ignore[attr-defined]
    now = datetime.now(UTC) + timedelta(minutes=5)
    with session_scope(engine) as session:
        fresh = Story(headline="A story that arrived meanwhile", first_seen=now, last_seen=now)
        session.add(fresh)
        session.flush()
        fresh_id = fresh.id
    try:
        rest = walk(client, "/stories", 5, sort="recent", cursor=first["next_cursor"])
        ids = [s["id"] for s in first["items"] + rest]
        assert len(ids) == len(set(ids)) and fresh_id not in ids  # no repeat, no shift
        assert all_stories(client, sort="recent")[0]["id"] == fresh_id
        assert len(ids) == len(all_stories(client, sort="recent")) - 1
    finally:
        with session_scope(engine) as session:
            session.delete(session.get(Story, fresh_id))


def test_search_ranks_matching_stories(client: TestClient) -> None:
    found = all_stories(client, q="Putin peace plan")
    assert found and "Putin" in found[0]["headline"]
    assert all_stories(client, q="putin PEACE") != []  # case does not matter
    assert all_stories(client, q="zzzqqqxxyy") == []
    assert all_stories(client, q="!!! ???") == []  # no words: nothing matches, no error
    blank = all_stories(client, q="  ", sort="recent")  # a blank search is no search
    assert [s["id"] for s in blank] == [s["id"] for s in all_stories(client, sort="recent")]
    every = {s["id"] for s in all_stories(client)}
    assert {s["id"] for s in all_stories(client, q="Putin", sort="recent")} <= every


def test_filters_narrow_the_listing(client: TestClient) -> None:
    stories = all_stories(client)
    widest = max(stories, key=lambda s: s["source_count"])
    assert [s["id"] for s in all_stories(client, min_sources=6)] == [widest["id"]]
    outlet = widest["outlets"][0]
    with_outlet = all_stories(client, source=outlet["id"])
    assert widest["id"] in [s["id"] for s in with_outlet]
    assert all(outlet["id"] in [o["id"] for o in s["outlets"]] for s in with_outlet)
    assert len(all_stories(client, language="en")) == len(stories)
    assert all_stories(client, language="xx") == []
    keyword = widest["keywords"][0]
    assert widest["id"] in [s["id"] for s in all_stories(client, topic=keyword)]
    assert all(keyword in s["keywords"] or s["id"] for s in all_stories(client, topic=keyword))
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    assert all_stories(client, since=future) == []
    assert all_stories(client, until="2001-01-01T00:00:00") == []  # no offset: UTC
    assert len(all_stories(client, since="2001-01-01T00:00:00Z")) == len(stories)


def test_story_detail_lists_articles_in_time_order_with_copies_folded(client: TestClient) -> None:
    widest = max(all_stories(client), key=lambda s: s["article_count"])
    detail = client.get(f"/stories/{widest['id']}").json()
    flat = detail["articles"] + [d for a in detail["articles"] for d in a["duplicates"]]
    assert len(flat) == widest["article_count"] == 7
    times = [a["published_at"] for a in detail["articles"]]
    assert times == sorted(times)
    copy = next(a for a in flat if path_of(a["url"]) == path_of(WIRE_COPY))
    original = next(a for a in detail["articles"] if path_of(a["url"]) == path_of(WIRE_ORIGINAL))
    assert copy in original["duplicates"] and copy["duplicate_of_id"] == original["id"]
    assert detail["first_report"]["published_at"] == times[0]
    assert any(path_of(a["url"]) == path_of(SEED_URL) for a in flat)
    assert all(a["excerpt"] and len(a["excerpt"]) <= 300 for a in flat)


def test_articles_listing_filters_and_pages(client: TestClient) -> None:
    everything = walk(client, "/articles", 7)
    assert len(everything) == 40 and len({a["id"] for a in everything}) == 40
    assert [a["id"] for a in everything] == sorted((a["id"] for a in everything), reverse=True)
    story_id = everything[0]["story_id"]
    in_story = walk(client, "/articles", 100, story=story_id)
    assert in_story and {a["story_id"] for a in in_story} == {story_id}
    source_id = everything[0]["source_id"]
    assert {a["source_id"] for a in walk(client, "/articles", 100, source=source_id)} == {source_id}
    found = walk(client, "/articles", 3, q="Putin")
    assert found and len({a["id"] for a in found}) == len(found)
    assert all(a["extraction_status"] for a in found)
    assert walk(client, "/articles", 10, since="2999-01-01T00:00:00Z") == []
    assert walk(client, "/articles", 100, status="extracted")


def test_article_text_is_an_excerpt_without_a_key(api: Api) -> None:
    article = api.client.get("/articles", params={"limit": 1}).json()["items"][0]
    public = api.client.get(f"/articles/{article['id']}").json()
    assert public["text"] is None and public["excerpt"]
    keyed = api.settings.model_copy(update={"api_keys": [_secret("k1")]})
    with TestClient(create_app(keyed)) as client:
        full = client.get(f"/articles/{article['id']}", headers={"X-API-Key": "k1"}).json()
        assert full["text"] and len(full["text"]) >= len(public["excerpt"]) - 1
        wrong = client.get(f"/articles/{article['id']}", headers={"X-API-Key": "k2"}).json()
        assert wrong["text"] is None


def test_sources_show_health_and_counts(client: TestClient) -> None:
    sources = client.get("/sources").json()["items"]
    assert len(sources) == 7
    assert sum(s["article_count"] for s in sources) == 40
    assert all(s["health"] in ("ok", "degraded") and s["last_polled_at"] for s in sources)
    one = client.get(f"/sources/{sources[0]['id']}").json()
    assert one == sources[0]
    assert [s["id"] for s in walk(client, "/sources", 3)] == [s["id"] for s in sources]
    assert client.get("/sources", params={"health": "dead"}).json()["items"] == []


def test_feeds_carry_the_top_stories(client: TestClient) -> None:
    top = all_stories(client)[:5]
    atom = client.get("/stories.atom", params={"limit": 5})
    assert atom.headers["content-type"].startswith("application/atom+xml")
    root = etree.fromstring(atom.content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    titles = [e.findtext("a:title", namespaces=ns) for e in root.findall("a:entry", ns)]
    assert titles == [s["headline"] for s in top]
    feed = client.get("/stories.json", params={"limit": 5})
    assert feed.headers["content-type"].startswith("application/feed+json")
    body = json.loads(feed.content)
    assert body["version"] == "https://jsonfeed.org/version/1.1"
    assert [i["title"] for i in body["items"]] == titles
    assert all(i["url"].endswith(f"/s/{s['id']}") for i, s in zip(body["items"], top, strict=True))
    assert len(client.get("/stories.json", params={"min_sources": 6}).json()["items"]) == 1


@pytest.mark.parametrize("path", ["/stories", "/stories.atom", "/stories.json", "/sources", "/"])
def test_listings_answer_304_to_a_known_etag(client: TestClient, path: str) -> None:
    first = client.get(path)
    assert first.headers["etag"] and "max-age" in first.headers["cache-control"]
    again = client.get(path, headers={"If-None-Match": first.headers["etag"]})
    if again.status_code == 200:  # hot scores moved on to the next minute in between
        first = again
        again = client.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize("path", ["/stories", "/stories.atom", "/", "/stories/999999"])
def test_head_answers_like_get_without_a_body(client: TestClient, path: str) -> None:
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"] != "0"
    assert head.headers["content-type"] == got.headers["content-type"]
    if got.status_code == 200 and head.headers["etag"] != got.headers["etag"]:
        got = client.get(path)  # hot scores moved on to the next minute in between
    assert head.headers.get("etag") == got.headers.get("etag")


def test_pages_for_people(client: TestClient) -> None:
    widest = max(all_stories(client), key=lambda s: s["article_count"])
    home = client.get("/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert widest["headline"] in home.text and f'href="/s/{widest["id"]}"' in home.text
    assert 'name="q"' in home.text
    page = client.get(f"/s/{widest['id']}").text
    assert all(outlet["name"] in page for outlet in widest["outlets"])
    assert path_of(SEED_URL) in page
    assert widest["headline"] in client.get("/", params={"q": "Putin"}).text
    assert "No stories" in client.get("/", params={"q": "zzzqqqxxyy"}).text
    assert client.get("/s/999999").status_code == 404


def test_pages_escape_what_feeds_say(api: Api) -> None:
    engine = api.client.app.state.engine  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        story = Story(headline="<script>alert(1)</script>", first_seen=now, last_seen=now)
        session.add(story)
        session.flush()
        story_id = story.id
    try:
        page = api.client.get(f"/s/{story_id}").text
        assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    finally:
        with session_scope(engine) as session:
            session.delete(session.get(Story, story_id))


def test_a_report_without_a_link_is_shown_without_one(api: Api) -> None:
    engine = api.client.app.state.engine  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        source, _ = store.add_source(session=session, url="http://wire.example/rss", now=now)
        story = Story(headline="Wire bulletin", first_seen=now, last_seen=now)
        session.add(story)
        session.flush()
        bulletin = Article(
            source_id=source.id or 0,
            story_id=story.id,
            guid="bulletin-1",
            url="",
            canonical_url=f"entry:{source.id}:bulletin-1",
            title="Wire bulletin: six wounded",
            text="Six people were wounded.",
            discovered_at=now,
        )
        session.add(bulletin)
        session.flush()
        ids = (source.id, story.id, bulletin.id)
    try:
        page = api.client.get(f"/s/{ids[1]}").text
        assert "Wire bulletin: six wounded" in page and 'href="#"' not in page
        article = api.client.get(f"/articles/{ids[2]}").json()
        assert (article["url"], article["title"]) == ("", "Wire bulletin: six wounded")
        feed = api.client.get("/stories.json", params={"q": "bulletin"}).json()
        (item,) = [i for i in feed["items"] if i["id"].endswith(f"/stories/{ids[1]}")]
        assert "external_url" not in item  # not an empty one
    finally:
        with session_scope(engine) as session:
            for model, key in zip((Article, Story, Source), ids[::-1], strict=True):
                session.delete(session.get(model, key))


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/stories/999999", 404),
        ("/stories/abc", 422),
        ("/stories/0", 422),
        ("/stories/99999999999999999999", 422),
        ("/stories?limit=0", 422),
        ("/stories?limit=101", 422),
        ("/stories?sort=best", 422),
        ("/stories?sort=relevance", 422),
        ("/stories?since=yesterday", 422),
        ("/stories?since=0001-01-01T00:00:00%2B01:00", 422),
        ("/stories?cursor=bm90IGEgY3Vyc29y", 422),
        ("/stories?cursor=!!", 422),
        ("/stories?min_sources=-1", 422),
        ("/stories?source=99999999999", 422),
        ("/stories?language=%00", 422),
        ("/articles/0", 422),
        ("/articles/999999", 404),
        ("/articles?status=nope", 422),
        ("/sources/999999", 404),
        ("/sources?health=nope", 422),
        ("/s/abc", 422),
    ],
)
def test_bad_requests_get_clear_errors(client: TestClient, path: str, status: int) -> None:
    answer = client.get(path)
    assert answer.status_code == status
    assert isinstance(answer.json()["detail"], str) and answer.json()["detail"]


def test_a_cursor_of_one_sort_is_refused_by_another(client: TestClient) -> None:
    cursor = client.get("/stories", params={"limit": 2, "sort": "recent"}).json()["next_cursor"]
    assert client.get("/stories", params={"cursor": cursor, "sort": "size"}).status_code == 422
    assert client.get("/articles", params={"cursor": cursor}).status_code == 422


def test_openapi_lists_every_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/stories",
        "/stories/{story_id}",
        "/stories.atom",
        "/stories.json",
        "/articles",
        "/articles/{article_id}",
        "/sources",
        "/sources/{source_id}",
        "/sources/import",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(paths)
    assert client.get("/docs").status_code == 200


def test_no_article_of_the_store_is_left_out_of_a_story(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with session_scope(engine) as session:
        unplaced = session.exec(select(Article).where(Article.story_id == None)).all()  # noqa: E711
        sources = session.exec(select(Source)).all()
    assert unplaced == [] and len(sources) == 7


def path_of(url: str) -> str:
    return urlsplit(url).path


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def test_hot_scores_follow_the_ranking_module(client: TestClient) -> None:
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    for story in all_stories(client)[:5]:
        detail = client.get(f"/stories/{story['id']}").json()
        published = [
            datetime.fromisoformat(a["published_at"])
            for a in detail["articles"] + [d for a in detail["articles"] for d in a["duplicates"]]
        ]
        expected = [
            ranking.hot_score(
                outlets=story["source_count"],
                articles=story["article_count"],
                last_seen=datetime.fromisoformat(story["last_seen"]),
                now=as_of,
                recent_articles=sum(as_of - ranking.GROWTH_WINDOW < p <= as_of for p in published),
            )
            for as_of in (before, before + timedelta(minutes=1))
        ]
        assert any(story["hot"] == pytest.approx(e, rel=1e-6) for e in expected)
