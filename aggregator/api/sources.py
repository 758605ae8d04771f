"""Sources: read by anyone; added, changed, removed and imported (OPML) with an API key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from sqlmodel import Session

from aggregator import queries, store
from aggregator.api.deps import MAX_ID, SessionDep, WriteAccess, etag_response
from aggregator.api.schemas import (
    ImportResult,
    Problem,
    SourceIn,
    SourceOut,
    SourcePage,
    SourcePatch,
    SourceRemoved,
)
from aggregator.api.shape import source_out
from aggregator.api.stories import CursorQuery
from aggregator.models import Source, SourceHealth
from aggregator.sources import SourceListError, is_feed_url, parse_source_list

router = APIRouter(tags=["sources"])
MAX_IMPORT_BYTES = 1024 * 1024
WRITE_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "No valid API key."},
    403: {"model": Problem, "description": "Writes are off: no API key is configured."},
}
SourceId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/sources", response_model=SourcePage, responses={422: {"model": Problem}})
def list_sources(
    request: Request,
    session: SessionDep,
    health: Annotated[SourceHealth | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: CursorQuery = None,
) -> Response:
    """Sources by id, with health, last poll, last error and article counts."""
    try:
        page = queries.list_sources(
            session=session, health=health.value if health else None, limit=limit, cursor=cursor
        )
    except queries.CursorError as exc:
        raise HTTPException(422, f"cursor: {exc}") from exc
    body = SourcePage(items=[source_out(v) for v in page.items], next_cursor=page.next_cursor)
    return etag_response(request, body.model_dump_json().encode(), media_type="application/json")


@router.get("/sources/{source_id}", response_model=SourceOut, responses={404: {"model": Problem}})
def get_source(session: SessionDep, source_id: SourceId) -> SourceOut:
    return _out(session, _source(session, source_id))


@router.post(
    "/sources",
    response_model=SourceOut,
    status_code=201,
    dependencies=[WriteAccess],
    responses={**WRITE_ERRORS, 200: {"model": SourceOut, "description": "Already there."}},
)
def add_source(body: SourceIn, session: SessionDep, response: Response) -> SourceOut:
    """Add a feed (due for a poll now); an existing feed URL answers 200 with that source, and a
    retired one comes back (due now)."""
    source, created = store.add_source(
        session=session, url=_feed_url(body.url), title=body.title, now=datetime.now(UTC)
    )
    if not created:
        response.status_code = 200
    return _out(session, source)


@router.patch(
    "/sources/{source_id}",
    response_model=SourceOut,
    dependencies=[WriteAccess],
    responses={**WRITE_ERRORS, 404: {"model": Problem}, 409: {"model": Problem}},
)
def update_source(source_id: SourceId, body: SourcePatch, session: SessionDep) -> SourceOut:
    """Change a source's feed URL or title, or make it due now (`poll_now`)."""
    source = _source(session, source_id)
    url = _feed_url(body.url) if body.url is not None else None
    if url is not None and url != source.url and store.source_url_taken(session=session, url=url):
        raise HTTPException(409, "another source has this feed URL")
    queries.update_source(
        session=session,
        source=source,
        url=url,
        title=body.title,
        poll_now=body.poll_now,
        now=datetime.now(UTC),
    )
    return _out(session, source)


@router.delete(
    "/sources/{source_id}",
    response_model=SourceRemoved,
    dependencies=[WriteAccess],
    responses={**WRITE_ERRORS, 404: {"model": Problem}},
)
def remove_source(source_id: SourceId, session: SessionDep) -> SourceRemoved:
    """Delete a source; one with articles is retired instead (dead, never polled again)."""
    deleted = queries.remove_source(session=session, source=_source(session, source_id))
    return SourceRemoved(id=source_id, deleted=deleted)


@router.post(
    "/sources/import",
    response_model=ImportResult,
    dependencies=[WriteAccess],
    responses={**WRITE_ERRORS, 413: {"model": Problem}, 422: {"model": Problem}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/x-opml": {"schema": {"type": "string"}}},
        }
    },
)
async def import_sources(request: Request, session: SessionDep) -> ImportResult:
    """Add the feeds of an OPML document (the request body)."""
    data = await _body(request)
    try:
        entries = parse_source_list(data, filename="import.opml")
    except SourceListError as exc:
        raise HTTPException(422, str(exc)) from exc
    now = datetime.now(UTC)
    added = [store.add_source(session=session, url=e.url, title=e.title, now=now) for e in entries]
    views = queries.source_views(session=session, sources=[s for s, _ in added])
    return ImportResult(
        added=sum(created for _, created in added),
        existing=sum(not created for _, created in added),
        sources=[source_out(v) for v in views],
    )


async def _body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_IMPORT_BYTES:
            raise HTTPException(413, f"OPML larger than {MAX_IMPORT_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _feed_url(url: str) -> str:
    url = url.strip()
    if not is_feed_url(url):
        raise HTTPException(422, "url: not an http(s) URL")
    return url


def _source(session: Session, source_id: int) -> Source:
    source = session.get(Source, source_id)
    if source is None:
        raise HTTPException(404, "no such source")
    return source


def _out(session: Session, source: Source) -> SourceOut:
    (view,) = queries.source_views(session=session, sources=[source])
    return source_out(view)
