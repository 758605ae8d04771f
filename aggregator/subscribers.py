"""Subscribers and their links: preferences validated and stored, the public sign-up with double
opt-in, and the signed confirm and unsubscribe links of every mail (HMAC, aggregator/signing.py).
Functions take `session=` and never commit: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from aggregator import digest, digest_store
from aggregator.models import Subscriber
from aggregator.settings import Settings
from aggregator.signing import BadToken, read_token, sign_token

UNSUBSCRIBE = "unsubscribe"  # token purposes
CONFIRM = "confirm"


class DigestConfigError(RuntimeError):
    """The settings do not allow mailing (no secret key to sign links)."""


# ---------------------------------------------------------------- state


def receiving(subscriber: Subscriber) -> bool:
    return subscriber.active and subscriber.confirmed_at is not None and not subscriber.paused_at


def not_receiving_reason(subscriber: Subscriber | None) -> str:
    if subscriber is None:
        return "no such subscriber"
    if not subscriber.active:
        return "unsubscribed"
    if subscriber.confirmed_at is None:
        return "the subscription is not confirmed yet"
    return f"paused: {subscriber.pause_reason or 'paused'}"


# ---------------------------------------------------------------- links


def require_secret(settings: Settings) -> str:
    secret = settings.secret_key.get_secret_value()
    if not secret:
        raise DigestConfigError(
            "no secret key: set AGGREGATOR_SECRET_KEY (it signs the links in every mail)"
        )
    return secret


def unsubscribe_token(subscriber: Subscriber, settings: Settings) -> str:
    payload = {"s": subscriber.id, "e": subscriber.email.lower()}
    return sign_token(payload, secret=require_secret(settings), purpose=UNSUBSCRIBE)


def unsubscribe_url(subscriber: Subscriber, settings: Settings) -> str:
    token = unsubscribe_token(subscriber, settings)
    return f"{settings.public_url.rstrip('/')}/unsubscribe?token={token}"


def confirm_url(subscriber: Subscriber, settings: Settings, now: datetime) -> str:
    payload = {"s": subscriber.id, "e": subscriber.email.lower(), "t": int(now.timestamp())}
    token = sign_token(payload, secret=require_secret(settings), purpose=CONFIRM)
    return f"{settings.public_url.rstrip('/')}/confirm?token={token}"


# ---------------------------------------------------------------- preferences and sign-up


class InvalidSubscriber(ValueError):
    """An address or preference that cannot be stored."""


@dataclass(frozen=True)
class SubscriberFields:
    email: str
    timezone: str = "UTC"
    send_hour: int = 7
    keywords: tuple[str, ...] = ()
    include_sources: tuple[int, ...] = ()
    exclude_sources: tuple[int, ...] = ()
    max_stories: int | None = None


def valid_email(email: str) -> str:
    """The address, trimmed; InvalidSubscriber unless it looks like one mailbox."""
    address = email.strip()
    local, at, domain = address.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain
        or len(address) > 254
        or any(c.isspace() or c in '<>(),;:"[]\\' for c in address)
    ):
        raise InvalidSubscriber(f"not an email address: {email!r}")
    return address


def validate(fields: SubscriberFields) -> SubscriberFields:
    try:
        digest.reader_zone(fields.timezone)
    except ValueError as exc:
        raise InvalidSubscriber(str(exc)) from exc
    if not 0 <= fields.send_hour <= 23:
        raise InvalidSubscriber("the send hour is 0 to 23")
    if fields.max_stories is not None and not 1 <= fields.max_stories <= 50:
        raise InvalidSubscriber("max stories is 1 to 50")
    keywords = tuple(k.strip() for k in fields.keywords if k.strip())
    if any(len(k) > 100 for k in keywords) or len(keywords) > 50:
        raise InvalidSubscriber("at most 50 keywords of at most 100 characters")
    return SubscriberFields(
        valid_email(fields.email),
        fields.timezone,
        fields.send_hour,
        keywords,
        tuple(fields.include_sources),
        tuple(fields.exclude_sources),
        fields.max_stories,
    )


def add_subscriber(
    fields: SubscriberFields,
    *,
    session: Session,
    settings: Settings,
    now: datetime,
    confirmed: bool,
) -> tuple[Subscriber, bool]:
    """Store a subscriber (or update the one with this address); returns (subscriber, created).
    An operator's subscriber is confirmed at once; a sign-up waits for its confirmation."""
    fields = validate(fields)
    subscriber = digest_store.subscriber_by_email(session=session, email=fields.email)
    created = subscriber is None
    if subscriber is None:
        subscriber = Subscriber(email=fields.email, created_at=now)
        session.add(subscriber)
    apply_fields(subscriber, fields, settings=settings)
    if confirmed:
        subscriber.confirmed_at = subscriber.confirmed_at or now
        subscriber.active, subscriber.unsubscribed_at = True, None
        subscriber.paused_at, subscriber.pause_reason, subscriber.bounce_count = None, None, 0
    session.flush()
    return subscriber, created


def apply_fields(subscriber: Subscriber, fields: SubscriberFields, *, settings: Settings) -> None:
    subscriber.timezone, subscriber.send_hour = fields.timezone, fields.send_hour
    subscriber.keywords = list(fields.keywords)
    subscriber.include_sources = list(fields.include_sources)
    subscriber.exclude_sources = list(fields.exclude_sources)
    subscriber.max_stories = fields.max_stories or settings.digest_max_stories


@dataclass(frozen=True)
class SubscriberChanges:
    """An operator's changes to a subscriber: None leaves a value as it is."""

    timezone: str | None = None
    send_hour: int | None = None
    keywords: Sequence[str] | None = None
    include_sources: Sequence[int] | None = None
    exclude_sources: Sequence[int] | None = None
    max_stories: int | None = None
    active: bool | None = None
    paused: bool | None = None


def update_subscriber(
    subscriber: Subscriber, changes: SubscriberChanges, *, settings: Settings, now: datetime
) -> None:
    """Apply an operator's changes; InvalidSubscriber (and nothing changed) for a bad value.
    Resuming a paused subscriber forgets their bounces."""
    s, c = subscriber, changes
    fields = SubscriberFields(
        s.email,
        c.timezone or s.timezone,
        s.send_hour if c.send_hour is None else c.send_hour,
        tuple(s.keywords if c.keywords is None else c.keywords),
        tuple(s.include_sources if c.include_sources is None else c.include_sources),
        tuple(s.exclude_sources if c.exclude_sources is None else c.exclude_sources),
        c.max_stories or s.max_stories,
    )
    apply_fields(s, validate(fields), settings=settings)
    if c.active is not None:
        s.active = c.active
        s.unsubscribed_at = None if c.active else s.unsubscribed_at or now
    if c.paused is False:
        s.paused_at, s.pause_reason, s.bounce_count = None, None, 0
    elif c.paused and s.paused_at is None:
        s.paused_at, s.pause_reason = now, "paused by an operator"


def sign_up(
    fields: SubscriberFields, *, session: Session, settings: Settings, now: datetime
) -> Subscriber | None:
    """A public sign-up: stores the address unconfirmed (or reactivates an unsubscribed one
    pending confirmation). Returns the subscriber to mail a confirmation link to, or None: the
    address receives digests already, or had a confirmation mail within the resend gap."""
    fields = validate(fields)
    subscriber = digest_store.subscriber_by_email(session=session, email=fields.email)
    if subscriber is not None and receiving(subscriber):
        return None
    if subscriber is None:
        subscriber = Subscriber(email=fields.email, created_at=now)
        session.add(subscriber)
    elif subscriber.confirmation_sent_at and now - subscriber.confirmation_sent_at < timedelta(
        minutes=settings.signup_resend_minutes
    ):
        return None
    apply_fields(subscriber, fields, settings=settings)
    if not subscriber.active:  # signing up again after unsubscribing: confirm again
        subscriber.confirmed_at = None
    subscriber.confirmation_sent_at = now
    session.flush()
    return subscriber


def confirm_subscription(
    token: str, *, session: Session, settings: Settings, now: datetime
) -> Subscriber:
    """The subscriber a confirmation link names, now confirmed and receiving (BadToken when
    the link is forged, expired or names no subscriber)."""
    payload = read_token(
        token,
        secret=require_secret(settings),
        purpose=CONFIRM,
        max_age=timedelta(hours=settings.signup_confirm_hours),
        now=now,
    )
    subscriber = _token_subscriber(payload, session=session)
    if subscriber is None:
        raise BadToken("no such subscription")
    subscriber.confirmed_at = subscriber.confirmed_at or now
    subscriber.active, subscriber.unsubscribed_at = True, None
    return subscriber


def unsubscribe(token: str, *, session: Session, settings: Settings, now: datetime) -> str | None:
    """Stop the digests of the subscriber an unsubscribe link names; their address, or None when
    they are gone already (BadToken for a forged link)."""
    payload = read_token(token, secret=require_secret(settings), purpose=UNSUBSCRIBE)
    subscriber = _token_subscriber(payload, session=session)
    if subscriber is None:
        return None
    if subscriber.active:
        subscriber.active, subscriber.unsubscribed_at = False, now
    return subscriber.email


def _token_subscriber(payload: dict[str, object], *, session: Session) -> Subscriber | None:
    subscriber_id, email = payload.get("s"), payload.get("e")
    if not isinstance(subscriber_id, int) or not isinstance(email, str):
        return None
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.email.lower() != email:
        return None
    return subscriber
