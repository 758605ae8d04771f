"""What the routes share: the session, the settings, API keys, request checks and ETags.

Dependencies that do no I/O are ``async def``: FastAPI then runs them in the event loop instead
of handing each one to the thread pool (a thread hop costs more than most of them)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response, Security
from fastapi.security import APIKeyHeader
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from aggregator.settings import Settings

MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One unit of work per request, on the app's engine: committed once the route has answered,
    rolled back if it raised. Opening a session does no I/O, so it opens here, in the event loop;
    the commit or rollback waits on the database, so it runs in the thread pool."""
    session = Session(request.app.state.engine, expire_on_commit=False)
    try:
        yield session
    except BaseException:
        await run_in_threadpool(_finish, session, commit=False)
        raise
    await run_in_threadpool(_finish, session, commit=True)


def _finish(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
    finally:
        session.close()  # rolls back whatever was not committed


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def presented_key(request: Request) -> str | None:
    """The API key of a request: `X-API-Key`, or `Authorization: Bearer KEY`."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_is_valid(key: str | None, settings: Settings) -> bool:
    """True for one of the configured keys, compared in constant time against every key."""
    if not key:
        return False
    given = key.encode()
    matches = [hmac.compare_digest(given, k.get_secret_value().encode()) for k in settings.api_keys]
    return any(matches)


async def has_api_key(request: Request, settings: SettingsDep) -> bool:
    return key_is_valid(presented_key(request), settings)


API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


async def require_api_key(
    request: Request,
    settings: SettingsDep,
    _key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
) -> None:
    """Writes need a configured key: 403 when none is configured, 401 without a valid one
    (sent as `X-API-Key`, or as `Authorization: Bearer`)."""
    if not settings.api_keys:
        raise HTTPException(403, "writes are off: no API keys are configured (AGGREGATOR_API_KEYS)")
    if not key_is_valid(presented_key(request), settings):
        raise HTTPException(
            401,
            "a valid API key is required (X-API-Key header or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )


HasKeyDep = Annotated[bool, Depends(has_api_key)]
WriteAccess = Depends(require_api_key)


def utc_param(name: str, value: datetime | None) -> datetime | None:
    """A query time in UTC; a time without offset is taken as UTC. 422 when out of range."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise HTTPException(422, f"{name}: time out of range") from exc


def etag_response(request: Request, body: bytes, *, media_type: str, max_age: int = 30) -> Response:
    """The body with a strong ETag and Cache-Control; 304 when the client has it already."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}"}
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags
