"""GET /healthz (process up), GET /readyz (database and broker reachable) and GET /metrics."""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from aggregator.api.deps import SettingsDep
from aggregator.queues import broker_problem

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "The database or the broker is unreachable."}},
)
def readyz(request: Request, settings: SettingsDep) -> JSONResponse:
    """The database and the broker answer: 200, else 503 with what failed."""
    problems = [p for p in (_database_problem(request), broker_problem(settings)) if p]
    status = 503 if problems else 200
    return JSONResponse(
        {"status": "unavailable" if problems else "ok", "problems": problems}, status
    )


def _database_problem(request: Request) -> str | None:
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return f"database: {type(exc).__name__}"
    return None


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        403: {"description": "Only loopback clients, unless AGGREGATOR_API_METRICS_PUBLIC."},
    },
)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    """Prometheus text format: polls, errors by kind, articles, stories, queue depth, latency."""
    if not settings.api_metrics_public and not is_loopback(request):
        raise HTTPException(403, "metrics are served to loopback clients only")
    body = await run_in_threadpool(generate_latest, request.app.state.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
