"""The daily digest end to end on SQLite and PostgreSQL, mailed to a real SMTP server on
127.0.0.1: content, headers, escaping, once per reader and local day (retries, duplicates,
concurrent senders, crashed senders), bounces, skips and scheduling."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import select

from aggregator import delivery, digest_store, subscribers
from aggregator.db import session_scope
from aggregator.delivery import DeliveryOutcome, SendLater
from aggregator.models import DeliveryStatus, DigestDelivery, Subscriber
from aggregator.settings import Settings
from aggregator.signing import read_token
from aggregator.subscribers import SubscriberFields
from tests.conftest import make_test_settings
from tests.digest_stories import add_story, grow_story
from tests.smtp import Mailbox, smtp_server

NOW = datetime(2025, 12, 4, 7, 5, tzinfo=UTC)  # 08:05 in Paris
DAY = date(2025, 12, 4)
HOSTILE = '<script>alert("pwned")</script>Bridge <b>closes</b> &lt;img src=x onerror=alert(1)&gt;'
SHOWN = 'alert("pwned") Bridge closes <img src=x onerror=alert(1)>'  # tags dropped, text kept


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def mail_settings(tmp_path: Path, database_url: str, mailbox: Mailbox) -> Settings:
    return make_test_settings(tmp_path / "data", database_url).model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": mailbox.port,
            "smtp_timeout": 5.0,
            "secret_key": SecretStr("test-secret"),
            "public_url": "https://news.example",
            "mail_from": "News digest <digest@news.example>",
        }
    )


def _subscriber(
    engine: Engine, settings: Settings, email: str = "reader@example.org", **fields: object
) -> int:
    with session_scope(engine) as session:
        subscriber, _ = subscribers.add_subscriber(
            SubscriberFields(email, **fields),  # type: ignore[arg-type]
            session=session,
            settings=settings,
            now=NOW - timedelta(days=30),
            confirmed=True,
        )
        return subscriber.id or 0


def _stories(engine: Engine, count: int = 4, *, now: datetime = NOW, prefix: str = "") -> list[int]:
    headlines = [HOSTILE, "Avalanche warning in the Alps", "Markets rise", "Choir wins award"]
    outlets = [["herald", "wire", "ledger", "courier"], ["wire", "courier"], ["ledger"], ["herald"]]
    with session_scope(engine) as session:
        return [
            add_story(session, prefix + headlines[i % 4], outlets[i % 4], now=now).id or 0
            for i in range(count)
        ]


def _send(
    engine: Engine, settings: Settings, subscriber_id: int, *, day: date = DAY, now: datetime = NOW
) -> DeliveryOutcome:
    return delivery.send_digest(subscriber_id, day, engine=engine, settings=settings, now=now)


def _record(engine: Engine, subscriber_id: int, day: date = DAY) -> DigestDelivery:
    with session_scope(engine) as session:
        row = digest_store.delivery_for(session=session, subscriber_id=subscriber_id, day=day)
        assert row is not None
        return row


def test_the_digest_arrives_with_both_parts_headers_and_safe_content(
    engine: Engine, mail_settings: Settings, mailbox: Mailbox
) -> None:
    reader = _subscriber(engine, mail_settings, timezone="Europe/Paris", send_hour=8)
    story_ids = _stories(engine)
    outcome = _send(engine, mail_settings, reader)
    assert outcome.status == "sent"

    (mail,) = mailbox.messages
    assert mailbox.recipients == [["reader@example.org"]]
    assert mail["To"] == "reader@example.org"
    assert mail["From"] == "News digest <digest@news.example>"
    assert mail["Subject"].startswith("Your news digest for Thursday 4 December: ")
    assert mail["Subject"].endswith(SHOWN)  # a header is text, not markup
    assert mail["Date"].endswith("+0100")  # the reader's time zone
    assert mail["Message-ID"] == outcome.message_id == _record(engine, reader).message_id
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = mail["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://news.example/unsubscribe?token=")
    token = parse_qs(urlsplit(link).query)["token"][0]
    payload = read_token(token, secret="test-secret", purpose="unsubscribe")
    assert payload == {"s": reader, "e": "reader@example.org"}

    assert mail.get_content_type() == "multipart/alternative"
    plain_part, html_part = mail.iter_parts()
    assert plain_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    text, html = plain_part.get_content(), html_part.get_content()
    for body in (text, html):
        assert "Thursday, 4 December 2025" in body
        assert "Avalanche warning in the Alps" in body and "Markets rise" in body
        assert "The city council voted on Tuesday to close the old harbour bridge" in body
    assert "<script" not in html.lower() and "<img" not in html and "<b>" not in html
    assert "alert(&#34;pwned&#34;) Bridge closes &lt;img src=x onerror=alert(1)&gt;" in html
    assert SHOWN in text
    assert 'href="https://wire.example/' in html and link.replace("&", "&amp;") in html
    assert "4 articles from" in text and "- Wire: https://wire.example/" in text
    # the hottest story (4 outlets) first, all four sent and recorded with their outlets
    assert text.index("Bridge") < text.index("Avalanche") < text.index("Choir")
    record = _record(engine, reader)
    assert record.status == DeliveryStatus.SENT and record.sent_at == NOW
    assert sorted(record.story_ids) == sorted(story_ids)
    assert record.story_outlets == {
        str(story_ids[0]): 4,
        str(story_ids[1]): 2,
        str(story_ids[2]): 1,
        str(story_ids[3]): 1,
    }


def test_a_second_send_on_the_same_day_sends_nothing_and_says_why(
    engine: Engine, mail_settings: Settings, mailbox: Mailbox
) -> None:
    reader = _subscriber(engine, mail_settings)
    _stories(engine)
    assert _send(engine, mail_settings, reader).status == "sent"
    again = _send(engine, mail_settings, reader, now=NOW + timedelta(hours=3))
    assert again.status == "sent" and not again.now
    assert again.reason == "the digest for 2025-12-04 was sent already at 07:05 UTC"
    assert len(mailbox.messages) == 1


def test_two_concurrent_senders_deliver_one_mail(
    engine: Engine, mail_settings: Settings, mailbox: Mailbox
) -> None:
    reader = _subscriber(engine, mail_settings)
    _stories(engine)
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def sender() -> None:
        start.wait()
        outcomes.append(_send(engine, mail_settings, reader).status)

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(mailbox.messages) == 1
    assert len(outcomes) == 4 and outcomes.count("sent") >= 1
    assert set(outcomes) <= {"sent", "busy"}
    with session_scope(engine) as session:
        assert len(session.exec(select(DigestDelivery)).all()) == 1


def test_a_transient_failure_is_retried_with_the_same_message_id(
    engine: Engine, mail_settings: Settings, mailbox: Mailbox
) -> None:
    reader = _subscriber(engine, mail_settings)
    _stories(engine)
    mailbox.data_replies.append("451 4.3.0 Try again later")
    with pytest.raises(SendLater) as later:
        _send(engine, mail_settings, reader)
    assert later.value.countdown == 60
    record = _record(engine, reader)
    assert (record.status, record.attempts) == (DeliveryStatus.RETRY, 1)
    assert "451" in (record.error or "")
    with session_scope(engine) as session:  # the task's own retry is pending: beat leaves it
        due = delivery.schedule_due_digests(
            session=session, settings=mail_settings, now=NOW + timedelta(minutes=14)
        )
        assert due == []
        lost = NOW + timedelta(seconds=mail_settings.digest_lease_seconds + 1)  # retry lost
        due = delivery.schedule_due_digests(session=session, settings=mail_settings, now=lost)
        assert due == [(reader, DAY)]
    assert _send(engine, mail_settings, reader, now=NOW + timedelta(minutes=1)).status == "sent"
    (mail,) = mailbox.messages
    assert mail["Message-ID"] == record.message_id
    assert _record(engine, reader).attempts == 2


def test_transient_failures_give_up_after_the_attempts(
    engine: Engine, mail_settings: Settings, mailbox: Mailbox
) -> None:
    settings = mail_settings.model_copy(update={"digest_send_attempts": 2})
    reader = _subscriber(engine, settings)
    _stories(engine)
    mailbox.data_replies.extend(["451 4.3.0 Busy", "451 4.3.0 Still busy"])
    with pytest.raises(SendLater):
        _send(engine, settings, reader)
    outcome = _send(engine, settings, reader, now=NOW + timedelta(minutes=1))
    assert outcome.status == "failed" and outcome.reason.startswith("gave up after 2 tries")
    assert _send(engine, settings, reader, now=NOW + timedelta(hours=1)).status == "failed"
    assert mailbox.messages == []


def test_a_crashed_senders_claim_is_taken_over_after_its_lease(
    engine: Engine, mail_settings: Settings, mailbox: Mailbox
) -> None:
    reader = _subscriber(engine, mail_settings)
    _stories(engine)
    with session_scope(engine) as session:  # a sender claims the day, then dies
        crashed = digest_store.claim_delivery(
            session=session,
            subscriber_id=reader,
            day=DAY,
            message_id="<m@x>",
            now=NOW,
            stale_before=NOW - timedelta(seconds=mail_settings.digest_lease_seconds),
        )
        assert crashed is not None
    soon = _send(engine, mail_settings, reader, now=NOW + timedelta(minutes=5))
    assert soon.status == "busy" and mailbox.messages == []
    later = NOW + timedelta(seconds=mail_settings.digest_lease_seconds + 1)
    assert _send(engine, mail_settings, reader, now=later).status == "sent"
    (mail,) = mailbox.messages
    assert mail["Message-ID"] == "<m@x>"  # the claimed record's id: a resend would match
    assert _record(engine, reader).attempts == 2


def test_repeated_bounces_pause_the_reader(
    engine: Engine, mail_settings: Settings, mailbox: Mailbox
) -> None:
    settings = mail_settings.model_copy(update={"digest_max_bounces": 2})
    reader = _subscriber(engine, settings, email="gone@example.org")
    mailbox.refuse["gone@example.org"] = "550 5.1.1 No such user"
    for day in range(2):
        now = NOW + timedelta(days=day)
        _stories(engine, now=now, prefix=f"Day {day}: ")
        outcome = _send(engine, settings, reader, day=DAY + timedelta(days=day), now=now)
        assert outcome.status == "failed" and "550" in outcome.reason
    with session_scope(engine) as session:
        subscriber = session.get(Subscriber, reader)
        assert subscriber is not None and subscriber.bounce_count == 2
        assert subscriber.paused_at is not None and "550" in (subscriber.pause_reason or "")
        later = NOW + timedelta(days=2)
        assert delivery.schedule_due_digests(session=session, settings=settings, now=later) == []
    third = _send(engine, settings, reader, day=DAY + timedelta(days=2), now=later)
    assert third.status == "not_receiving" and third.reason.startswith("paused: 2 bounces")
    assert mailbox.messages == []


def test_too_few_stories_skip_the_day_and_record_why(
    engine: Engine, mail_settings: Settings, mailbox: Mailbox
) -> None:
    reader = _subscriber(engine, mail_settings)
    _stories(engine, 2)
    outcome = _send(engine, mail_settings, reader)
    assert outcome.status == "skipped"
    assert outcome.reason == "only 2 stories qualified (minimum 3)"
    assert _record(engine, reader).error == "only 2 stories qualified (minimum 3)"
    _stories(engine, 4, prefix="Later: ")  # more news the same day does not reopen it
    again = _send(engine, mail_settings, reader, now=NOW + timedelta(hours=2))
    assert again.status == "skipped" and "skipped: only 2 stories" in again.reason
    assert mailbox.messages == []


def test_stories_sent_before_return_only_with_two_more_outlets(
    engine: Engine, mail_settings: Settings, mailbox: Mailbox
) -> None:
    settings = mail_settings.model_copy(update={"digest_min_stories": 1})
    reader = _subscriber(engine, settings)
    first_ids = _stories(engine, 3)
    assert _send(engine, settings, reader).status == "sent"
    tomorrow = NOW + timedelta(days=1)
    with session_scope(engine) as session:
        from aggregator.models import Story

        grown, nudged = session.get(Story, first_ids[1]), session.get(Story, first_ids[2])
        assert grown is not None and nudged is not None
        grow_story(session, grown, ["gazette", "review"], when=tomorrow - timedelta(hours=1))
        grow_story(session, nudged, ["gazette"], when=tomorrow - timedelta(hours=1))
        add_story(session, "Fresh news of the day", ["wire", "herald"], now=tomorrow)
    outcome = _send(engine, settings, reader, day=DAY + timedelta(days=1), now=tomorrow)
    assert outcome.status == "sent"
    second = mailbox.messages[1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Fresh news of the day" in second and "Avalanche warning in the Alps" in second
    assert "Markets rise" not in second and "Bridge" not in second


def test_schedule_finds_readers_whose_hour_has_come_in_their_time_zone(
    engine: Engine, mail_settings: Settings
) -> None:
    kiritimati = _subscriber(engine, mail_settings, "k@example.org", timezone="Pacific/Kiritimati")
    new_york = _subscriber(engine, mail_settings, "ny@example.org", timezone="America/New_York")
    _subscriber(engine, mail_settings, "late@example.org", timezone="UTC", send_hour=23)
    with session_scope(engine) as session:
        unconfirmed = Subscriber(email="new@example.org", created_at=NOW)
        gone = Subscriber(email="gone@example.org", created_at=NOW, confirmed_at=NOW, active=False)
        session.add_all([unconfirmed, gone])

    def due(now: datetime) -> list[tuple[int, date]]:
        with session_scope(engine) as session:
            return delivery.schedule_due_digests(session=session, settings=mail_settings, now=now)

    # 17:00 UTC on 3 Nov: 07:00 on the 4th in Kiritimati; 12:00 in New York (EST since the 2nd)
    assert due(datetime(2025, 11, 3, 16, 59, tzinfo=UTC)) == [(new_york, date(2025, 11, 3))]
    assert due(datetime(2025, 11, 3, 17, 0, tzinfo=UTC)) == [
        (kiritimati, date(2025, 11, 4)),
        (new_york, date(2025, 11, 3)),
    ]
    # 11:30 UTC on the 3rd is 06:30 in New York after the DST change (it was 07:30 before)
    assert due(datetime(2025, 11, 3, 11, 30, tzinfo=UTC)) == []
    assert due(datetime(2025, 11, 1, 11, 30, tzinfo=UTC)) == [(new_york, date(2025, 11, 1))]
    # a finished day is not scheduled again
    with session_scope(engine) as session:
        session.add(
            DigestDelivery(
                subscriber_id=new_york,
                local_day=date(2025, 11, 3),
                status="sent",
                message_id="<x>",
                created_at=NOW,
            )
        )
    assert due(datetime(2025, 11, 3, 17, 0, tzinfo=UTC)) == [(kiritimati, date(2025, 11, 4))]


def test_the_digest_goes_out_over_starttls_with_a_login(
    engine: Engine, mail_settings: Settings, tmp_path: Path
) -> None:
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    users = {"sender": "pw"}
    certificate = authority.issue_cert("127.0.0.1")
    with smtp_server(tls="starttls", certificate=certificate, users=users) as secure:
        settings = mail_settings.model_copy(
            update={
                "smtp_port": secure.port,
                "smtp_tls": "starttls",
                "smtp_user": "sender",
                "smtp_password": SecretStr("pw"),
                "smtp_ca_file": str(tmp_path / "ca.pem"),
            }
        )
        reader = _subscriber(engine, settings)
        _stories(engine)
        assert _send(engine, settings, reader).status == "sent"
    (mail,) = secure.messages
    assert mail["Message-ID"] == _record(engine, reader).message_id
    assert secure.logins == ["sender"] and (secure.tls_versions[0] or "").startswith("TLSv1")
