"""Sign-up with double opt-in, signed confirm and one-click unsubscribe links, and subscriber
management behind the API key: the real app on a real store, mails to a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session

from aggregator import delivery, digest_store, subscribers
from aggregator.api.app import create_app
from aggregator.db import session_scope
from aggregator.models import Subscriber
from aggregator.settings import Settings
from aggregator.signing import sign_token
from tests.conftest import make_test_settings
from tests.smtp import Mailbox, smtp_server

KEY = "test-api-key"
REDIS_LIMITS = "redis://127.0.0.1:6379/11"  # a database of its own for the sign-up limit


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def app_settings(tmp_path: Path, database_url: str, mailbox: Mailbox) -> Settings:
    return make_test_settings(tmp_path / "data", database_url).model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": mailbox.port,
            "smtp_timeout": 5.0,
            "secret_key": SecretStr("test-secret"),
            "public_url": "https://news.example",
            "api_keys": [SecretStr(KEY)],
            "signup_per_client_per_hour": 3,
        }
    )


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    app = create_app(app_settings)
    with TestClient(app) as test_client:
        yield test_client
    app.state.engine.dispose()


def _session(client: TestClient) -> Session:
    return Session(client.app.state.engine)  # type: ignore[attr-defined]


def _stored(client: TestClient, email: str) -> Subscriber | None:
    with _session(client) as session:
        return digest_store.subscriber_by_email(session=session, email=email)


def _link_token(body: str, path: str) -> str:
    url = re.search(rf"https://news\.example{path}\?token=[\w.\-]+", body)
    assert url, body
    return parse_qs(urlsplit(url.group(0)).query)["token"][0]


def test_sign_up_confirms_by_mail_before_anything_is_sent(
    client: TestClient, mailbox: Mailbox, app_settings: Settings
) -> None:
    page = client.get("/subscribe")
    assert page.status_code == 200 and 'action="/subscribe"' in page.text
    form = "email=new%40example.org&timezone=Asia%2FTokyo&hour=6&keywords=ukraine%2C+alps"
    answer = client.post(
        "/subscribe", content=form, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 202 and "check your inbox" in answer.text
    stored = _stored(client, "new@example.org")
    assert stored is not None and stored.confirmed_at is None
    assert (stored.timezone, stored.send_hour, stored.keywords) == (
        "Asia/Tokyo",
        6,
        ["ukraine", "alps"],
    )
    with _session(client) as session:  # unconfirmed: never due
        later = datetime.now(UTC) + timedelta(days=1)
        assert (
            delivery.schedule_due_digests(session=session, settings=app_settings, now=later) == []
        )

    (mail,) = mailbox.messages
    assert mail["To"] == "new@example.org"
    assert mail["Subject"] == "Confirm your news digest subscription"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    token = _link_token(text, "/confirm")
    assert _link_token(mail.get_body(("html",)).get_content(), "/confirm") == token  # type: ignore[union-attr]

    shown = client.get("/confirm", params={"token": token})  # a mail scanner's visit
    assert shown.status_code == 200 and "Confirm my subscription" in shown.text
    assert _stored(client, "new@example.org").confirmed_at is None  # type: ignore[union-attr]
    done = client.post("/confirm", params={"token": token})
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert "06:00 (Asia/Tokyo)" in done.text
    assert _stored(client, "new@example.org").confirmed_at is not None  # type: ignore[union-attr]

    again = client.post("/subscribe", json={"email": "NEW@example.org"})  # already receiving
    assert again.status_code == 202 and len(mailbox.messages) == 1


def test_sign_ups_are_rate_limited_per_client(client: TestClient, mailbox: Mailbox) -> None:
    for i in range(3):
        assert client.post("/subscribe", json={"email": f"r{i}@example.org"}).status_code == 202
    refused = client.post("/subscribe", json={"email": "r9@example.org"})
    assert refused.status_code == 429 and 3500 < int(refused.headers["retry-after"]) <= 3600
    assert _stored(client, "r9@example.org") is None
    form = client.post("/subscribe", data={"email": "r8@example.org"})  # the page says so too
    assert form.status_code == 429 and "too many sign-ups" in form.text
    assert len(mailbox.messages) == 3


def test_without_redis_each_app_counts_its_own_sign_ups(app_settings: Settings) -> None:
    """The server-less default (no Redis broker): the count lives in the process."""
    first, second = create_app(app_settings), create_app(app_settings)
    try:
        with TestClient(first) as one, TestClient(second) as two:
            for i in range(3):
                one.post("/subscribe", json={"email": f"a{i}@example.org"})
            assert one.post("/subscribe", json={"email": "a9@example.org"}).status_code == 429
            assert two.post("/subscribe", json={"email": "b@example.org"}).status_code == 202
    finally:
        first.state.engine.dispose()
        second.state.engine.dispose()


@pytest.fixture
def limits_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_LIMITS)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.mark.redis
def test_with_a_redis_broker_every_api_process_shares_the_limit(
    app_settings: Settings, mailbox: Mailbox, limits_redis: redis.Redis
) -> None:
    """Two apps (as two API processes would) on one Redis: sign-ups through either count
    against the same client's hour, so a second process does not double the allowance."""
    shared = app_settings.model_copy(update={"broker_url": REDIS_LIMITS})
    first, second = create_app(shared), create_app(shared)
    try:
        with TestClient(first) as one, TestClient(second) as two:
            answers = [
                (one if i % 2 else two).post("/subscribe", json={"email": f"s{i}@example.org"})
                for i in range(3)
            ]
            assert [a.status_code for a in answers] == [202, 202, 202]
            for app_client in (one, two):
                refused = app_client.post("/subscribe", json={"email": "s9@example.org"})
                assert refused.status_code == 429
                assert 3500 < int(refused.headers["retry-after"]) <= 3600
    finally:
        first.state.engine.dispose()
        second.state.engine.dispose()
    assert any(b"signup" in key for key in limits_redis.keys("*"))  # the count is in Redis
    assert len(mailbox.messages) == 3


def test_an_unreachable_redis_refuses_sign_ups_for_now(app_settings: Settings) -> None:
    """Without its shared counter the limit cannot hold: sign-up answers 503, not 500."""
    down = app_settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/11"})
    app = create_app(down)
    try:
        with TestClient(app) as test_client:
            answer = test_client.post("/subscribe", json={"email": "x@example.org"})
    finally:
        app.state.engine.dispose()
    assert answer.status_code == 503 and answer.headers["retry-after"] == "60"
    assert "not available" in answer.json()["detail"]


def test_a_repeated_sign_up_does_not_mail_again_within_the_gap(
    client: TestClient, mailbox: Mailbox
) -> None:
    assert client.post("/subscribe", json={"email": "a@example.org"}).status_code == 202
    assert client.post("/subscribe", json={"email": "a@example.org"}).status_code == 202
    assert len(mailbox.messages) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-address"},
        {"email": "a@example.org", "timezone": "Mars/Base"},
        {"email": "a@example.org", "send_hour": 24},
        {"email": "a@b.example\r\nBcc: x@example.org"},
    ],
)
def test_bad_sign_ups_are_refused(
    client: TestClient, mailbox: Mailbox, body: dict[str, object]
) -> None:
    answer = client.post("/subscribe", json=body)
    assert answer.status_code == 422 and answer.json()["detail"]
    assert mailbox.messages == []


def test_forged_and_expired_confirm_links_are_refused(
    client: TestClient, app_settings: Settings
) -> None:
    assert client.post("/subscribe", json={"email": "a@example.org"}).status_code == 202
    subscriber = _stored(client, "a@example.org")
    assert subscriber is not None
    old = datetime.now(UTC) - timedelta(hours=49)
    expired = subscribers.confirm_url(subscriber, app_settings, old).split("token=")[1]
    forged = sign_token(
        {"s": subscriber.id, "e": "a@example.org", "t": 2**31}, secret="other", purpose="confirm"
    )
    for token in (expired, forged, "garbage"):
        assert client.post("/confirm", params={"token": token}).status_code == 400
    assert _stored(client, "a@example.org").confirmed_at is None  # type: ignore[union-attr]


def test_one_click_unsubscribe(client: TestClient, app_settings: Settings) -> None:
    with session_scope(client.app.state.engine) as session:  # type: ignore[attr-defined]
        subscriber, _ = subscribers.add_subscriber(
            subscribers.SubscriberFields("reader@example.org"),
            session=session,
            settings=app_settings,
            now=datetime.now(UTC),
            confirmed=True,
        )
        token = subscribers.unsubscribe_token(subscriber, app_settings)
    page = client.get("/unsubscribe", params={"token": token})
    assert page.status_code == 200 and "Unsubscribe from the daily digest" in page.text
    assert _stored(client, "reader@example.org").active  # type: ignore[union-attr]
    done = client.post(
        "/unsubscribe",
        params={"token": token},
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200 and "reader@example.org will get no more digests" in done.text
    stored = _stored(client, "reader@example.org")
    assert stored is not None and not stored.active and stored.unsubscribed_at is not None
    assert client.post("/unsubscribe", params={"token": token}).status_code == 200  # idempotent
    assert client.post("/unsubscribe", params={"token": token + "x"}).status_code == 400


def test_subscriber_management_needs_the_key(client: TestClient) -> None:
    assert client.get("/subscribers").status_code == 401
    assert client.post("/subscribers", json={"email": "a@example.org"}).status_code == 401
    headers = {"X-API-Key": KEY}
    created = client.post(
        "/subscribers",
        json={"email": "a@example.org", "timezone": "Europe/Paris", "keywords": ["alps"]},
        headers=headers,
    )
    assert created.status_code == 201
    body = created.json()
    assert body["confirmed"] and body["active"] and body["max_stories"] == 10
    again = client.post("/subscribers", json={"email": "a@example.org"}, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    path = f"/subscribers/{body['id']}"
    patched = client.patch(path, json={"send_hour": 18, "paused": True}, headers=headers)
    assert patched.status_code == 200
    assert patched.json()["send_hour"] == 18 and patched.json()["paused"]
    assert client.patch(path, json={"timezone": "Nowhere/City"}, headers=headers).status_code == 422
    resumed = client.patch(path, json={"paused": False, "active": False}, headers=headers).json()
    assert not resumed["paused"] and not resumed["active"] and resumed["send_hour"] == 18
    unchanged = ("keywords", "timezone", "max_stories", "include_sources")
    assert {k: resumed[k] for k in unchanged} == {k: patched.json()[k] for k in unchanged}
    assert [s["email"] for s in client.get("/subscribers", headers=headers).json()] == [
        "a@example.org"
    ]
    assert client.delete(path, headers=headers).status_code == 204
    assert client.get(path, headers=headers).status_code == 404
    assert client.delete(path, headers=headers).status_code == 404


def test_without_configured_keys_management_is_off(app_settings: Settings) -> None:
    app = create_app(app_settings.model_copy(update={"api_keys": []}))
    with TestClient(app) as test_client:
        assert test_client.get("/subscribers", headers={"X-API-Key": KEY}).status_code == 403
    app.state.engine.dispose()
