"""API writes behind keys, rate limits, readiness and metrics, on SQLite and PostgreSQL."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import create_engine, make_url, text

from aggregator import task_stats
from aggregator.api.app import create_app
from aggregator.api.serve import APP, NoDelayConfig
from aggregator.db import session_scope
from aggregator.models import Article, Source, Story
from aggregator.settings import Settings
from tests.conftest import POSTGRES_URL
from tests.stored import add_extracted_article

KEY = "s3cret-key"
OPML = b"""<?xml version="1.0"?>
<opml version="2.0"><head><title>t</title></head><body>
  <outline text="News"><outline type="rss" text="Alpha" xmlUrl="https://alpha.example/rss"/>
  <outline type="rss" text="Beta" xmlUrl="https://beta.example/feed.xml"/></outline>
</body></opml>"""


@pytest.fixture
def keyed(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"api_keys": [SecretStr(KEY)]}))) as c:
        yield c


def auth(key: str = KEY) -> dict[str, str]:
    return {"X-API-Key": key}


def test_writes_are_off_without_configured_keys(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        answer = client.post("/sources", json={"url": "https://a.example/rss"}, headers=auth())
        assert answer.status_code == 403 and "AGGREGATOR_API_KEYS" in answer.json()["detail"]
        assert client.get("/sources").json()["items"] == []


def test_writes_need_a_valid_key(keyed: TestClient) -> None:
    body = {"url": "https://a.example/rss"}
    assert keyed.post("/sources", json=body).status_code == 401
    wrong = keyed.post("/sources", json=body, headers=auth("nope"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    bearer = keyed.post("/sources", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 201


def test_sources_are_added_changed_and_removed(keyed: TestClient) -> None:
    created = keyed.post(
        "/sources", json={"url": "https://a.example/rss", "title": "A"}, headers=auth()
    )
    assert created.status_code == 201
    source = created.json()
    assert source["health"] == "new" and source["article_count"] == 0
    again = keyed.post("/sources", json={"url": "https://a.example/rss"}, headers=auth())
    assert again.status_code == 200 and again.json()["id"] == source["id"]
    changed = keyed.patch(
        f"/sources/{source['id']}", json={"title": "Alpha", "poll_now": True}, headers=auth()
    )
    assert changed.status_code == 200 and changed.json()["title"] == "Alpha"
    assert keyed.get(f"/sources/{source['id']}").json()["title"] == "Alpha"
    other = keyed.post("/sources", json={"url": "https://b.example/rss"}, headers=auth()).json()
    clash = keyed.patch(
        f"/sources/{other['id']}", json={"url": "https://a.example/rss"}, headers=auth()
    )
    assert clash.status_code == 409
    removed = keyed.delete(f"/sources/{source['id']}", headers=auth())
    assert removed.json() == {"id": source["id"], "deleted": True}
    assert keyed.get(f"/sources/{source['id']}").status_code == 404
    assert keyed.delete(f"/sources/{source['id']}", headers=auth()).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://a.example/rss"},
        {"url": "not a url"},
        {"url": "http://[::1/rss"},
        {"url": "https://a.example/rss", "extra": 1},
        {"url": "https://a.example/rss", "title": "a\x00b"},
        {},
    ],
)
def test_bad_sources_are_refused(keyed: TestClient, body: dict[str, object]) -> None:
    answer = keyed.post("/sources", json=body, headers=auth())
    assert answer.status_code == 422 and isinstance(answer.json()["detail"], str)


def test_a_source_with_articles_is_retired_not_deleted_and_comes_back_when_added_again(
    keyed: TestClient,
) -> None:
    engine = keyed.app.state.engine  # type: ignore[attr-defined]
    with session_scope(engine) as session:
        article = add_extracted_article(session, "wire", "Comet found", "A comet was found.")
        source_id = article.source_id
    removed = keyed.delete(f"/sources/{source_id}", headers=auth())
    assert removed.json() == {"id": source_id, "deleted": False}
    source = keyed.get(f"/sources/{source_id}").json()
    assert source["health"] == "dead" and source["article_count"] == 1
    assert source["next_poll_at"].startswith("9999")
    with session_scope(engine) as session:
        assert session.get(Source, source_id) is not None
    again = keyed.post("/sources", json={"url": source["url"]}, headers=auth())
    assert again.status_code == 200 and again.json()["id"] == source_id
    revived = datetime.fromisoformat(again.json()["next_poll_at"])
    assert revived <= datetime.now(UTC)  # due now: the next tick polls it
    assert again.json()["article_count"] == 1


def test_opml_import_adds_each_feed_once(keyed: TestClient) -> None:
    headers = {**auth(), "Content-Type": "text/x-opml"}
    first = keyed.post("/sources/import", content=OPML, headers=headers).json()
    assert first["added"] == 2 and first["existing"] == 0
    assert {s["title"] for s in first["sources"]} == {"Alpha", "Beta"}
    again = keyed.post("/sources/import", content=OPML, headers=headers).json()
    assert again["added"] == 0 and again["existing"] == 2
    bad = keyed.post("/sources/import", content=b"<html/>", headers=headers)
    assert bad.status_code == 422 and "OPML" in bad.json()["detail"]
    huge = keyed.post("/sources/import", content=b" " * (1024 * 1024 + 1), headers=headers)
    assert huge.status_code == 413
    assert keyed.post("/sources/import", content=OPML).status_code == 401


def test_rate_limit_answers_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(update={"api_rate_limit": "3/minute"})
    with TestClient(create_app(limited)) as client:
        assert [client.get("/sources").status_code for _ in range(3)] == [200, 200, 200]
        refused = client.get("/stories")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert client.get("/healthz").status_code == 200  # probes are never limited
    with TestClient(create_app(settings)) as client:  # off by default
        assert {client.get("/healthz").status_code for _ in range(10)} == {200}


def test_rate_limit_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="rate limit"):
        Settings(_env_file=None, api_rate_limit="many")


def test_readiness_checks_database_and_broker(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json() == {"status": "ok", "problems": []}
    down = settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    with TestClient(create_app(down)) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503 and answer.json()["problems"][0].startswith("broker")
        assert client.get("/healthz").status_code == 200


def test_readiness_sees_a_database_that_went_away(settings: Settings, tmp_path: Path) -> None:
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        folder = tmp_path / "db"
        folder.mkdir()
        settings = settings.model_copy(update={"database_url": f"sqlite:///{folder / 'x.db'}"})
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        client.app.state.engine.dispose()  # type: ignore[attr-defined]
        if url.get_backend_name() == "sqlite":
            shutil.rmtree(folder)
        else:
            admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE "{url.database}" WITH (FORCE)'))
            admin.dispose()
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["problems"] == ["database: OperationalError"]


def test_metrics_for_loopback_clients(settings: Settings) -> None:
    app = create_app(settings)
    with session_scope(app.state.engine) as session:
        add_extracted_article(session, "wire", "Comet found", "A comet was found.")
    with TestClient(app, client=("127.0.0.1", 40000)) as client:
        client.get("/stories")
        text = client.get("/metrics").text
    assert 'aggregator_articles{status="extracted"} 1.0' in text
    assert 'aggregator_sources{health="new"} 1.0' in text
    assert "aggregator_stories 0.0" in text
    assert "aggregator_store_up 1.0" in text
    assert 'aggregator_queue_depth{queue="all"}' in text
    assert "aggregator_sources_polled_last_hour 0.0" in text
    assert (
        'aggregator_http_request_duration_seconds_count{method="GET",route="/stories",status="200"} 1.0'
        in text
    )
    with TestClient(app, client=("203.0.113.9", 40000)) as client:
        assert client.get("/metrics").status_code == 403
    public = settings.model_copy(update={"api_metrics_public": True})
    with TestClient(create_app(public), client=("203.0.113.9", 40000)) as client:
        assert client.get("/metrics").status_code == 200


def test_metrics_cover_the_workers_tasks_and_queues_on_redis(settings: Settings) -> None:
    broker = "redis://127.0.0.1:6379/10"  # a database of its own
    redis_client = redis.Redis.from_url(broker)
    redis_client.delete(task_stats.STATS_KEY, "fetching")
    for seconds in (0.02, 0.3):  # as two worker processes record them
        task_stats.record_task(
            redis_client, task="workers.tasks.fetch_article", outcome="success", seconds=seconds
        )
    redis_client.rpush("fetching", "m1", "m2")
    try:
        app = create_app(settings.model_copy(update={"broker_url": broker}))
        with TestClient(app, client=("127.0.0.1", 40000)) as client:
            text = client.get("/metrics").text
    finally:
        redis_client.delete(task_stats.STATS_KEY, "fetching")
        redis_client.close()
    labels = 'outcome="success",task="workers.tasks.fetch_article"'
    assert f"aggregator_task_runs_total{{{labels}}} 2.0" in text
    bucket = "aggregator_task_duration_seconds_bucket"
    assert f'{bucket}{{le="0.05",{labels}}} 1.0' in text
    assert f'{bucket}{{le="0.5",{labels}}} 2.0' in text
    assert f"aggregator_task_duration_seconds_sum{{{labels}}} 0.32" in text
    assert 'aggregator_queue_depth{queue="fetching"} 2.0' in text


def test_hot_lists_the_latest_stories_of_a_quiet_store(settings: Settings) -> None:
    app = create_app(settings)
    old = datetime.now(UTC) - timedelta(days=30)
    with session_scope(app.state.engine) as session:
        for n, days in enumerate((0, 2, 10)):  # the last one is outside the hot window
            seen = old - timedelta(days=days)
            session.add(
                Story(
                    headline=f"story {n}",
                    first_seen=seen,
                    last_seen=seen,
                    article_count=1,
                    source_count=1,
                )
            )
    with TestClient(app) as client:
        items = client.get("/stories").json()["items"]
        assert [s["headline"] for s in items] == ["story 0", "story 1"]
        assert all(s["hot"] > 0 for s in items)
        assert len(client.get("/stories", params={"sort": "recent"}).json()["items"]) == 3


def test_search_follows_inserts_updates_and_deletes(settings: Settings) -> None:
    app = create_app(settings)
    engine = app.state.engine
    with session_scope(engine) as session:
        article = add_extracted_article(session, "wire", "Comet found", "A bright comet appeared.")
        article_id = article.id
    with TestClient(app) as client:

        def found(q: str) -> list[int]:
            return [a["id"] for a in client.get("/articles", params={"q": q}).json()["items"]]

        assert found("bright comet") == [article_id]
        assert found("COMET") == [article_id]  # case-insensitive
        with session_scope(engine) as session:
            row = session.get(Article, article_id)
            assert row is not None
            row.text = "A faint asteroid appeared."
        assert found("bright") == [] and found("asteroid") == [article_id]
        with session_scope(engine) as session:
            session.delete(session.get(Article, article_id))
        assert found("asteroid") == []


def test_the_shared_listener_hands_its_connections_tcp_nodelay() -> None:
    """uvicorn binds the socket that several workers share without TCP_NODELAY (uvicorn issue
    3149); serve()'s listener has it, and the connections it accepts inherit it."""
    listener = NoDelayConfig(APP, host="127.0.0.1", port=0, workers=2).bind_socket()
    with listener:
        listener.listen()
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_several_workers_answer_keep_alive_requests_without_a_delayed_ack_wait(
    tmp_path: Path,
) -> None:
    """Without TCP_NODELAY every keep-alive request after the first waits >= 40 ms for the
    client's delayed ACK before the response body leaves the server."""
    port = _free_port()
    code = (
        f"from aggregator.api.serve import serve; serve(host='127.0.0.1', port={port}, workers=2)"
    )
    server = subprocess.Popen([sys.executable, "-c", code], env=_serve_env(tmp_path), cwd=tmp_path)
    try:
        _wait_until_ready(port)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        timings = []
        for _ in range(11):
            started = time.perf_counter()
            connection.request("GET", "/healthz")
            assert connection.getresponse().read() == b'{"status":"ok"}'
            timings.append(time.perf_counter() - started)
        connection.close()
        assert statistics.median(timings[1:]) < 0.035
    finally:
        server.terminate()
        server.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _serve_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AGGREGATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "AGGREGATOR_DATA_DIR": str(tmp_path / "data"),
        "AGGREGATOR_CONFIG_FILE": str(tmp_path / "none.toml"),
    }


def _wait_until_ready(port: int) -> None:
    for _ in range(150):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")


def test_aggregator_serve_runs_the_api(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "AGGREGATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "AGGREGATOR_DATA_DIR": str(tmp_path / "data"),
        "AGGREGATOR_CONFIG_FILE": str(tmp_path / "none.toml"),
    }
    command = [str(Path(sys.executable).parent / "aggregator"), "serve", "--port", str(port)]
    command += ["--workers", "2"]
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        answer = None
        for _ in range(150):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer is not None and answer.json() == {"status": "ok", "problems": []}
        assert httpx.get(f"http://127.0.0.1:{port}/stories").json()["items"] == []
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_search_finds_common_middling_and_rare_words_alike(settings: Settings) -> None:
    """Each frequency takes its own plan on PostgreSQL (see queries.search_matches)."""
    app = create_app(settings)
    with session_scope(app.state.engine) as session:
        first = add_extracted_article(session, "wire", "Opening", "alpha beta gamma")
        for n in range(299):
            words = "alpha" + (" beta" if n % 10 == 0 else "") + (" gamma" if n == 7 else "")
            url = f"https://wire.example/{n}"
            session.add(
                Article(
                    source_id=first.source_id,
                    guid=url,
                    url=url,
                    canonical_url=url,
                    title=f"Report {n}",
                    text=f"{words} report number {n}",
                    extraction_status="extracted",
                    published_at=first.published_at,
                    discovered_at=first.discovered_at,
                )
            )
    with TestClient(app) as client:

        def count(q: str) -> int:
            seen: set[int] = set()
            cursor = None
            for _ in range(10):
                params = {"q": q, "limit": 100, **({"cursor": cursor} if cursor else {})}
                body = client.get("/articles", params=params).json()
                seen |= {a["id"] for a in body["items"]}
                cursor = body["next_cursor"]
                if cursor is None:
                    return len(seen)
            raise AssertionError("endless cursor")

        assert count("alpha") == 300
        assert count("beta") == 31
        assert count("gamma") == 2
        assert count("alpha gamma") == 2
        assert count("delta") == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://[a.example/rss",  # urlsplit raised ValueError: a 500
        "https://a.example/" + "r" * 3000,  # over sources.url's index limit on PostgreSQL: a 500
        "https://a.example/r&#9;ss",  # a control character, refused by POST /sources too
    ],
)
def test_opml_import_refuses_what_post_sources_refuses(keyed: TestClient, url: str) -> None:
    opml = f'<opml version="2.0"><body><outline text="A" xmlUrl="{url}"/></body></opml>'
    headers = {**auth(), "Content-Type": "text/x-opml"}
    answer = keyed.post("/sources/import", content=opml.encode(), headers=headers)
    assert answer.status_code == 422 and isinstance(answer.json()["detail"], str)
