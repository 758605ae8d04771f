"""The HTTP API: the app, its routers and its middleware (latency metrics, rate limit).

Routers are listed in ROUTERS; adding one is a one-line edit there.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from limits import parse

from aggregator.api import articles, feeds, ops, pages, sources, stories, subscriptions
from aggregator.api.middleware import HeadAsGetMiddleware, LatencyMiddleware, RateLimitMiddleware
from aggregator.api.schemas import Problem
from aggregator.api.telemetry import make_registry
from aggregator.db import make_engine, upgrade_database
from aggregator.settings import Settings, get_settings

ROUTERS: list[APIRouter] = [
    ops.router,
    feeds.router,  # before stories: /stories.atom and /stories.json are not story ids
    stories.router,
    articles.router,
    sources.router,
    pages.router,
    subscriptions.router,
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app on the configured store, migrated to the current schema."""
    settings = settings or get_settings()
    engine = make_engine(settings.effective_database_url)
    upgrade_database(engine)
    app = FastAPI(
        title="news-aggregator",
        version="0.1.0",
        summary="Stories from many outlets: listings, search, feeds, sources.",
        responses={422: {"model": Problem, "description": "Invalid input."}},
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.registry, app.state.latency = make_registry(engine, settings)
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(RequestValidationError, _invalid_input)  # type: ignore[arg-type]
    if settings.api_rate_limit:
        app.add_middleware(
            RateLimitMiddleware,
            item=parse(settings.api_rate_limit),
            storage_uri=settings.shared_counter_uri,
        )
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(LatencyMiddleware, histogram=app.state.latency)
    return app


async def _invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable line per problem: "query.limit: Input should be ≤ 100"."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        lines.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse({"detail": "; ".join(lines) or "invalid input"}, status_code=422)
