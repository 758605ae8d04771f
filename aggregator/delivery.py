"""Digest delivery, orchestrated: who is due, one reader's day sent at most once, and the
sign-up confirmation mail (subscribers and their links: aggregator/subscribers.py).

    beat ─every 15 min─▶ schedule_due_digests ─▶ send_digest(subscriber, day):
        claim the day's record (committed) ─▶ select + render ─▶ SMTP ─▶ record sent / skipped /
        failed (committed)

The claim is a unique (subscriber, local day) row taken in its own committed transaction before
anything is sent, so retried tasks, redelivered messages and a second beat find it taken. A
finished record is never sent again. A claim whose sender vanished (its lease ran out) is taken
over with the same Message-ID: only a crash between the SMTP server's acceptance and the
record's completion can send a day twice, and then as the same message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage

from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session

from aggregator import digest, digest_store, mail
from aggregator.db import session_scope
from aggregator.digest import DigestPage, DigestStory, Preferences, RenderedDigest, Selection
from aggregator.mail import Composed, MailError, MailErrorKind
from aggregator.models import DeliveryStatus, DigestDelivery, Subscriber
from aggregator.settings import Settings
from aggregator.subscribers import (
    confirm_url,
    not_receiving_reason,
    receiving,
    require_secret,
    unsubscribe_url,
)

log = logging.getLogger(__name__)
Sender = Callable[..., None]  # mail.send_message(message, *, settings)
MAX_RETRY_SECONDS = 1800


class SendLater(Exception):
    """A transient SMTP failure: the task should try again after `countdown` seconds."""

    def __init__(self, reason: str, countdown: float) -> None:
        super().__init__(reason)
        self.countdown = countdown


@dataclass(frozen=True)
class DeliveryOutcome:
    status: str  # a DeliveryStatus, or "busy" (another sender holds it), "not_receiving"
    reason: str
    message_id: str | None = None
    story_ids: tuple[int, ...] = ()
    now: bool = True  # False when an earlier send had already finished the day


@dataclass(frozen=True)
class BuiltDigest:
    selection: Selection
    stories: list[DigestStory]
    rendered: RenderedDigest | None  # None when the selection was skipped


# ---------------------------------------------------------------- scheduling


def schedule_due_digests(
    *, session: Session, settings: Settings, now: datetime
) -> list[tuple[int, date]]:
    """(subscriber, local day) of every receiving reader whose send hour has come today and
    whose day is neither finished nor in flight."""
    due: list[tuple[int, date]] = []
    for subscriber in digest_store.receiving_subscribers(session=session):
        try:
            day = digest.due_day(subscriber.timezone, subscriber.send_hour, now)
        except ValueError:
            log.warning("subscriber %s has an unknown time zone", subscriber.id)
            continue
        if day is not None and subscriber.id is not None:
            due.append((subscriber.id, day))
    if not due:
        return []
    done = digest_store.finished_days(
        session=session,
        subscriber_ids=[sid for sid, _ in due],
        since=min(day for _, day in due),
        stale_before=_stale_before(settings, now),
    )
    return [pair for pair in due if pair not in done]


def _stale_before(settings: Settings, now: datetime) -> datetime:
    return digest_store.stale_before(now, settings.digest_lease_seconds)


# ---------------------------------------------------------------- sending


def send_digest(
    subscriber_id: int,
    day: date,
    *,
    engine: Engine,
    settings: Settings,
    now: datetime,
    send: Sender = mail.send_message,
) -> DeliveryOutcome:
    """Send this reader's digest for their local `day`, at most once. Raises SendLater on a
    transient SMTP failure that has attempts left."""
    require_secret(settings)
    with session_scope(engine) as session:
        claimed = _claim(subscriber_id, day, session=session, settings=settings, now=now)
    if isinstance(claimed, DeliveryOutcome):
        return claimed
    subscriber, record = claimed
    with session_scope(engine) as session:
        built = build_digest(subscriber, session=session, settings=settings, now=now, day=day)
    if built.rendered is None:
        reason = built.selection.skip_reason or "nothing to send"
        return _finish(record, DeliveryStatus.SKIPPED, reason, engine=engine, now=now)
    message = digest_message(subscriber, built.rendered, record.message_id, settings, now)
    try:
        send(message, settings=settings)
    except MailError as exc:
        return _failed(record, exc, engine=engine, settings=settings, now=now)
    return _sent(record, built.stories, built.selection, engine=engine, now=now)


def _claim(
    subscriber_id: int, day: date, *, session: Session, settings: Settings, now: datetime
) -> tuple[Subscriber, DigestDelivery] | DeliveryOutcome:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or not receiving(subscriber):
        return DeliveryOutcome("not_receiving", not_receiving_reason(subscriber))
    message_id = digest.message_id(
        subscriber_id, subscriber.email, day, domain=mail.sender_domain(settings.mail_from)
    )
    record = digest_store.claim_delivery(
        session=session,
        subscriber_id=subscriber_id,
        day=day,
        message_id=message_id,
        now=now,
        stale_before=_stale_before(settings, now),
    )
    if record is None:
        existing = digest_store.delivery_for(session=session, subscriber_id=subscriber_id, day=day)
        return _taken_outcome(existing, day)
    return subscriber, record


def _taken_outcome(existing: DigestDelivery | None, day: date) -> DeliveryOutcome:
    if existing is None or existing.status in (DeliveryStatus.CLAIMED, DeliveryStatus.RETRY):
        return DeliveryOutcome("busy", f"the digest for {day} is being sent by another worker")
    when = f" at {existing.sent_at:%H:%M} UTC" if existing.sent_at else ""
    reasons = {
        DeliveryStatus.SENT: f"the digest for {day} was sent already{when}",
        DeliveryStatus.SKIPPED: f"the digest for {day} was skipped: {existing.error}",
        DeliveryStatus.FAILED: f"the digest for {day} failed: {existing.error}",
    }
    reason = reasons.get(DeliveryStatus(existing.status), existing.status)
    ids = tuple(existing.story_ids)
    return DeliveryOutcome(existing.status, reason, existing.message_id, ids, now=False)


def build_digest(
    subscriber: Subscriber,
    *,
    session: Session,
    settings: Settings,
    now: datetime,
    day: date,
    min_stories: int | None = None,
) -> BuiltDigest:
    """Select this reader's stories (or the reason to skip) and render them."""
    since = digest.window_start(
        digest_store.last_sent_at(session=session, subscriber_id=subscriber.id or 0),
        now=now,
        window=timedelta(hours=settings.digest_window_hours),
        max_window=timedelta(hours=settings.digest_max_window_hours),
    )
    selection = digest.select_stories(
        digest_store.candidate_stories(session=session, since=since, now=now),
        prefs=preferences(subscriber),
        sent_outlets=digest_store.sent_outlets(session=session, subscriber_id=subscriber.id or 0),
        now=now,
        min_stories=settings.digest_min_stories if min_stories is None else min_stories,
        min_new_outlets=settings.digest_resend_min_new_outlets,
    )
    if selection.skip_reason is not None:
        return BuiltDigest(selection, [], None)
    headlines = {story.id: story.headline for story in selection.stories}
    texts = digest_store.story_texts(session=session, stories=headlines)
    stories = [digest.digest_story(s, texts.get(s.id, [])) for s in selection.stories]
    page = digest_page(subscriber, settings, day)
    return BuiltDigest(selection, stories, digest.render_digest(stories, page))


def digest_page(subscriber: Subscriber, settings: Settings, day: date) -> DigestPage:
    return DigestPage(
        day=day,
        timezone=subscriber.timezone,
        unsubscribe_url=unsubscribe_url(subscriber, settings),
        site_url=f"{settings.public_url.rstrip('/')}/",
        recipient=subscriber.email,
    )


def preferences(subscriber: Subscriber) -> Preferences:
    return Preferences(
        keywords=tuple(subscriber.keywords or ()),
        include_sources=frozenset(subscriber.include_sources or ()),
        exclude_sources=frozenset(subscriber.exclude_sources or ()),
        max_stories=subscriber.max_stories,
    )


def digest_message(
    subscriber: Subscriber,
    rendered: RenderedDigest,
    message_id: str,
    settings: Settings,
    now: datetime,
) -> EmailMessage:
    """The digest as a MIME message, with one-click unsubscribe headers (RFC 2369, RFC 8058)."""
    link = unsubscribe_url(subscriber, settings)
    composed = Composed(
        recipient=subscriber.email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id,
        date=now.astimezone(digest.reader_zone(subscriber.timezone)),
        headers={
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": f"News digest <digest.{mail.sender_domain(settings.mail_from)}>",
            "Auto-Submitted": "auto-generated",
            "Precedence": "bulk",
        },
    )
    return mail.compose_message(composed, mail_from=settings.mail_from)


def _sent(
    record: DigestDelivery,
    stories: list[DigestStory],
    selection: Selection,
    *,
    engine: Engine,
    now: datetime,
) -> DeliveryOutcome:
    outlets = {str(s.id): s.outlet_count for s in selection.stories}
    with session_scope(engine) as session:
        row = _reload(session, record)
        row.status, row.sent_at, row.error = DeliveryStatus.SENT.value, now, None
        row.story_ids, row.story_outlets = [s.id for s in stories], outlets
        subscriber = session.get(Subscriber, row.subscriber_id)
        if subscriber is not None:
            subscriber.bounce_count = 0
    reason = f"sent {len(stories)} stories"
    return DeliveryOutcome("sent", reason, record.message_id, tuple(s.id for s in stories))


def _finish(
    record: DigestDelivery, status: DeliveryStatus, reason: str, *, engine: Engine, now: datetime
) -> DeliveryOutcome:
    with session_scope(engine) as session:
        row = _reload(session, record)
        row.status, row.error = status.value, reason
    return DeliveryOutcome(status.value, reason, record.message_id)


def _failed(
    record: DigestDelivery,
    exc: MailError,
    *,
    engine: Engine,
    settings: Settings,
    now: datetime,
) -> DeliveryOutcome:
    """Record an SMTP failure: a transient one is retried while attempts are left; a bounce
    counts against the address and pauses it after `digest_max_bounces` in a row."""
    transient = exc.kind == MailErrorKind.TRANSIENT
    retry = transient and record.attempts < settings.digest_send_attempts
    with session_scope(engine) as session:
        row = _reload(session, record)
        row.status = (DeliveryStatus.RETRY if retry else DeliveryStatus.FAILED).value
        row.error = (
            str(exc) if not transient or retry else f"gave up after {row.attempts} tries: {exc}"
        )
        if exc.kind == MailErrorKind.BOUNCE:
            _count_bounce(session, row.subscriber_id, str(exc), settings=settings, now=now)
    if retry:
        raise SendLater(str(exc), min(60.0 * 2 ** (record.attempts - 1), MAX_RETRY_SECONDS))
    return DeliveryOutcome(DeliveryStatus.FAILED.value, row.error or "", record.message_id)


def _count_bounce(
    session: Session, subscriber_id: int, error: str, *, settings: Settings, now: datetime
) -> None:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return
    subscriber.bounce_count += 1
    if subscriber.bounce_count >= settings.digest_max_bounces and subscriber.paused_at is None:
        subscriber.paused_at = now
        subscriber.pause_reason = f"{subscriber.bounce_count} bounces in a row, last: {error}"


def _reload(session: Session, record: DigestDelivery) -> DigestDelivery:
    row = session.get(DigestDelivery, record.id)
    assert row is not None, "delivery records are never deleted while claimed"
    return row


# ---------------------------------------------------------------- the sign-up confirmation


def confirmation_message(subscriber: Subscriber, settings: Settings, now: datetime) -> EmailMessage:
    rendered = digest.render_confirmation(
        confirm_url=confirm_url(subscriber, settings, now),
        recipient=subscriber.email,
        hours=int(settings.signup_confirm_hours),
    )
    domain = mail.sender_domain(settings.mail_from)
    composed = Composed(
        recipient=subscriber.email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=f"<confirm.{subscriber.id}.{int(now.timestamp())}@{domain}>",
        date=now,
        headers={"Auto-Submitted": "auto-generated"},
    )
    return mail.compose_message(composed, mail_from=settings.mail_from)


def send_confirmation(
    subscriber_id: int,
    *,
    engine: Engine,
    settings: Settings,
    now: datetime,
    send: Sender = mail.send_message,
) -> bool:
    """Mail the double opt-in link to an unconfirmed subscriber; False when there is none."""
    with session_scope(engine) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None or (subscriber.confirmed_at is not None and subscriber.active):
            return False
        message = confirmation_message(subscriber, settings, now)
    send(message, settings=settings)
    return True


# ---------------------------------------------------------------- the demo

DEMO_READER = "reader@demo.example"


def demo_digest(*, session: Session, settings: Settings, now: datetime) -> EmailMessage | None:
    """The digest a UTC reader without preferences would get now, as a message (nothing is
    sent or recorded; links are signed with a throwaway key when none is configured)."""
    if not settings.secret_key.get_secret_value():
        settings = settings.model_copy(update={"secret_key": SecretStr("demo-only-key")})
    reader = Subscriber(id=0, email=DEMO_READER, created_at=now, confirmed_at=now)
    reader.max_stories = settings.digest_max_stories
    day = digest.local_day(reader.timezone, now)
    built = build_digest(
        reader, session=session, settings=settings, now=now, day=day, min_stories=1
    )
    if built.rendered is None:
        return None
    message_id = digest.message_id(0, DEMO_READER, day, domain="demo.example")
    return digest_message(reader, built.rendered, message_id, settings, now)
