"""Digest subscriptions: public sign-up with double opt-in, signed confirm and unsubscribe links
(one-click, RFC 8058), and subscriber management behind the API key."""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from limits import RateLimitItemPerHour, storage, strategies
from limits.errors import StorageError
from pydantic import BaseModel, Field, ValidationError
from sqlmodel import Session

from aggregator import delivery, digest_store, subscribers
from aggregator.api.deps import MAX_ID, SessionDep, SettingsDep, WriteAccess
from aggregator.mail import MailError
from aggregator.models import Subscriber
from aggregator.settings import Settings
from aggregator.signing import BadToken
from aggregator.subscribers import (
    DigestConfigError,
    InvalidSubscriber,
    SubscriberChanges,
    SubscriberFields,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["subscriptions"])
templates = Environment(
    loader=FileSystemLoader(FilePath(__file__).parent / "templates" / "subscriptions"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
MAX_FORM_BYTES = 16 * 1024
SIGNUP = "signup"  # the rate limit's namespace
SubscriberId = Annotated[int, Path(ge=1, le=MAX_ID)]
TokenQuery = Annotated[str, Query(min_length=1, max_length=2000)]


class SubscriberIn(BaseModel):
    email: str = Field(max_length=254)
    timezone: str = Field("UTC", max_length=64)
    send_hour: int = Field(7, ge=0, le=23)
    keywords: list[str] = Field(default_factory=list, max_length=50)
    include_sources: list[int] = Field(default_factory=list, max_length=500)
    exclude_sources: list[int] = Field(default_factory=list, max_length=500)
    max_stories: int | None = Field(None, ge=1, le=50)


class SubscriberPatch(BaseModel):
    timezone: str | None = Field(None, max_length=64)
    send_hour: int | None = Field(None, ge=0, le=23)
    keywords: list[str] | None = Field(None, max_length=50)
    include_sources: list[int] | None = Field(None, max_length=500)
    exclude_sources: list[int] | None = Field(None, max_length=500)
    max_stories: int | None = Field(None, ge=1, le=50)
    active: bool | None = None
    paused: bool | None = None


class SubscriberOut(BaseModel):
    id: int
    email: str
    timezone: str
    send_hour: int
    keywords: list[str]
    include_sources: list[int]
    exclude_sources: list[int]
    max_stories: int
    active: bool
    confirmed: bool
    paused: bool
    pause_reason: str | None
    bounce_count: int
    created_at: datetime


# ---------------------------------------------------------------- public pages


class SignupLimiter:
    """Sign-ups per client address in a moving hour, counted where every API process sees them:
    in the shared Redis if there is one, else in this process (the server-less default)."""

    def __init__(self, settings: Settings) -> None:
        counts = storage.storage_from_string(settings.shared_counter_uri, wrap_exceptions=True)
        self._limiter = strategies.MovingWindowRateLimiter(counts)
        self._item = RateLimitItemPerHour(settings.signup_per_client_per_hour)

    def allow(self, client: str) -> bool:
        """Count a sign-up; False when the client has had its share (StorageError: no Redis)."""
        return self._limiter.hit(self._item, SIGNUP, client)

    def retry_after(self, client: str) -> int:
        reset = self._limiter.get_window_stats(self._item, SIGNUP, client).reset_time
        return max(1, math.ceil(reset - time.time()))


def _limiter(request: Request, settings: Settings) -> SignupLimiter:
    limiter: SignupLimiter | None = getattr(request.app.state, "signup_limiter", None)
    if limiter is None:
        limiter = request.app.state.signup_limiter = SignupLimiter(settings)
    return limiter


def _page(title: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("lines", [])
    context.setdefault("values", {"email": "", "timezone": "UTC", "hour": 7, "keywords": ""})
    body = templates.get_template("page.html").render(title=title, **context)
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
    return HTMLResponse(body, status_code=status, headers=headers)


@router.get("/subscribe", response_class=HTMLResponse, include_in_schema=False)
def subscribe_page() -> HTMLResponse:
    return _page("Subscribe to the daily digest", form="subscribe")


@router.post("/subscribe", status_code=202, responses={429: {}, 422: {}, 503: {}})
async def subscribe(
    request: Request, session: SessionDep, settings: SettingsDep, background: BackgroundTasks
) -> Response:
    """Sign up (form or JSON body). Always the same answer whether or not the address is known;
    the confirmation link goes out by mail, and nothing else is sent until it is opened."""
    as_json = request.headers.get("content-type", "").startswith("application/json")
    refused = _refused_by_limit(_limiter(request, settings), _client(request), as_json=as_json)
    if refused is not None:
        return refused
    try:
        fields = _signup_fields(await _body(request), as_json=as_json)
        subscribers.require_secret(settings)
        subscriber = subscribers.sign_up(
            fields, session=session, settings=settings, now=datetime.now(UTC)
        )
    except (InvalidSubscriber, ValidationError, ValueError) as exc:
        return _answer(as_json, 422, _message(exc))
    except DigestConfigError:
        return _answer(as_json, 503, "sign-up is not available on this server")
    if subscriber is not None and subscriber.id is not None:
        session.commit()  # the mail goes out after the response: the row must be there
        background.add_task(_mail_confirmation, request.app.state.engine, settings, subscriber.id)
    return _answer(as_json, 202, "check your inbox: we sent you a link to confirm the address")


def _refused_by_limit(limiter: SignupLimiter, client: str, *, as_json: bool) -> Response | None:
    """The 429 (or 503 when the shared counter cannot be reached) for a refused sign-up."""
    try:
        if limiter.allow(client):
            return None
        retry_after = limiter.retry_after(client)
    except StorageError as exc:
        log.warning("the sign-up rate limit cannot be checked: %s", exc)
        return _answer(as_json, 503, "sign-up is not available right now; try again later", 60)
    return _answer(
        as_json, 429, "too many sign-ups from your address; try again later", retry_after
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ValueError("request too large")
    return body


def _signup_fields(body: bytes, *, as_json: bool) -> SubscriberFields:
    if as_json:
        data = SubscriberIn.model_validate_json(body)
    else:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        data = SubscriberIn(
            email=form.get("email", ""),
            timezone=form.get("timezone", "UTC") or "UTC",
            send_hour=int(form.get("hour", "7") or 7),
            keywords=[k for k in form.get("keywords", "").split(",") if k.strip()],
        )
    return SubscriberFields(data.email, data.timezone, data.send_hour, tuple(data.keywords))


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc) or "invalid request"


def _answer(as_json: bool, status: int, message: str, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    if as_json:
        body = json.dumps({"detail": message})
        return Response(body, status, headers=headers, media_type="application/json")
    if status == 202:
        return _page("Almost done", 202, lines=[message])
    page = _page("Subscribe to the daily digest", status, form="subscribe", error=message)
    page.headers.update(headers)
    return page


def _mail_confirmation(engine: Any, settings: Settings, subscriber_id: int) -> None:
    try:
        delivery.send_confirmation(
            subscriber_id, engine=engine, settings=settings, now=datetime.now(UTC)
        )
    except MailError as exc:
        log.warning("confirmation mail to subscriber %s failed: %s", subscriber_id, exc)


@router.get("/confirm", response_class=HTMLResponse, include_in_schema=False)
def confirm_page(token: TokenQuery) -> HTMLResponse:
    """A button, not the confirmation itself: mail scanners open links."""
    action = f"/confirm?{urlencode({'token': token})}"
    return _page("Confirm your subscription", form=action, button="Confirm my subscription")


@router.post("/confirm", response_class=HTMLResponse)
def confirm(token: TokenQuery, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    try:
        subscriber = subscribers.confirm_subscription(
            token, session=session, settings=settings, now=datetime.now(UTC)
        )
    except (BadToken, DigestConfigError):
        return _page("Link not valid", 400, lines=["This link is not valid or has expired."])
    when = f"{subscriber.send_hour:02d}:00 ({subscriber.timezone})"
    line = f"{subscriber.email} will get the digest daily at {when}."
    return _page("You are subscribed", lines=[line])


@router.get("/unsubscribe", response_class=HTMLResponse, include_in_schema=False)
def unsubscribe_page(token: TokenQuery) -> HTMLResponse:
    action = f"/unsubscribe?{urlencode({'token': token})}"
    return _page("Unsubscribe", form=action, button="Unsubscribe from the daily digest")


@router.post("/unsubscribe", response_class=HTMLResponse)
def unsubscribe(token: TokenQuery, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """One-click unsubscribe (RFC 8058: mail clients POST `List-Unsubscribe=One-Click`)."""
    try:
        email = subscribers.unsubscribe(
            token, session=session, settings=settings, now=datetime.now(UTC)
        )
    except (BadToken, DigestConfigError):
        return _page("Link not valid", 400, lines=["This link is not valid."])
    line = f"{email} will get no more digests." if email else "This subscription is gone."
    return _page("Unsubscribed", lines=[line])


# ---------------------------------------------------------------- management (API key)


@router.get("/subscribers", response_model=list[SubscriberOut], dependencies=[WriteAccess])
def list_subscribers(session: SessionDep) -> list[SubscriberOut]:
    return [_out(s) for s in digest_store.list_subscribers(session=session)]


@router.post(
    "/subscribers",
    response_model=SubscriberOut,
    status_code=201,
    dependencies=[WriteAccess],
    responses={200: {"description": "Updated the subscriber with this address."}},
)
def add_subscriber(
    body: SubscriberIn, session: SessionDep, settings: SettingsDep, response: Response
) -> SubscriberOut:
    """Add a confirmed subscriber (the operator vouches for the address), or update one."""
    fields = SubscriberFields(
        body.email,
        body.timezone,
        body.send_hour,
        tuple(body.keywords),
        tuple(body.include_sources),
        tuple(body.exclude_sources),
        body.max_stories,
    )
    try:
        subscriber, created = subscribers.add_subscriber(
            fields, session=session, settings=settings, now=datetime.now(UTC), confirmed=True
        )
    except InvalidSubscriber as exc:
        raise HTTPException(422, str(exc)) from exc
    if not created:
        response.status_code = 200
    return _out(subscriber)


@router.get(
    "/subscribers/{subscriber_id}", response_model=SubscriberOut, dependencies=[WriteAccess]
)
def get_subscriber(subscriber_id: SubscriberId, session: SessionDep) -> SubscriberOut:
    return _out(_subscriber(session, subscriber_id))


@router.patch(
    "/subscribers/{subscriber_id}", response_model=SubscriberOut, dependencies=[WriteAccess]
)
def update_subscriber(
    subscriber_id: SubscriberId, body: SubscriberPatch, session: SessionDep, settings: SettingsDep
) -> SubscriberOut:
    subscriber = _subscriber(session, subscriber_id)
    changes = SubscriberChanges(**body.model_dump())
    try:
        subscribers.update_subscriber(subscriber, changes, settings=settings, now=datetime.now(UTC))
    except InvalidSubscriber as exc:
        raise HTTPException(422, str(exc)) from exc
    return _out(subscriber)


@router.delete("/subscribers/{subscriber_id}", status_code=204, dependencies=[WriteAccess])
def remove_subscriber(subscriber_id: SubscriberId, session: SessionDep) -> Response:
    if not digest_store.delete_subscriber(session=session, subscriber_id=subscriber_id):
        raise HTTPException(404, "no such subscriber")
    return Response(status_code=204)


def _subscriber(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise HTTPException(404, "no such subscriber")
    return subscriber


def _out(s: Subscriber) -> SubscriberOut:
    return SubscriberOut(
        id=s.id or 0,
        email=s.email,
        timezone=s.timezone,
        send_hour=s.send_hour,
        keywords=list(s.keywords),
        include_sources=list(s.include_sources),
        exclude_sources=list(s.exclude_sources),
        max_stories=s.max_stories,
        active=s.active,
        confirmed=s.confirmed_at is not None,
        paused=s.paused_at is not None,
        pause_reason=s.pause_reason,
        bounce_count=s.bounce_count,
        created_at=s.created_at,
    )
