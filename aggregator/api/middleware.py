"""ASGI middleware of the app: HEAD answered as GET, request latency metrics, and a per-client
rate limit."""

from __future__ import annotations

import math
import time

from fastapi.responses import JSONResponse
from limits import RateLimitItem, storage, strategies
from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class LatencyMiddleware:
    """Observes each HTTP request's duration by route template, method and status."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            self.histogram.labels(template, scope["method"], str(status)).observe(
                time.perf_counter() - started
            )


class RateLimitMiddleware:
    """A moving-window limit per client address: 429 with Retry-After when over it."""

    def __init__(self, app: ASGIApp, item: RateLimitItem, storage_uri: str) -> None:
        self.app = app
        self.item = item
        self.limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        if self.limiter.hit(self.item, "api", client):
            await self.app(scope, receive, send)
            return
        reset = self.limiter.get_window_stats(self.item, "api", client).reset_time
        response = JSONResponse(
            {"detail": f"rate limit exceeded ({self.item}); retry later"},
            status_code=429,
            headers={"Retry-After": str(max(1, math.ceil(reset - time.time())))},
        )
        await response(scope, receive, send)


class HeadAsGetMiddleware:
    """HEAD on any GET route (FastAPI routes answer only the methods they declare): the GET's
    status and headers, Content-Length and ETag included, without its body. Link checkers and
    feed readers ask HEAD before they GET."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        as_get = {**scope, "method": "GET"}  # a copy: the server still knows it is a HEAD
        await self.app(as_get, receive, send_headers_only)
        if "route" in as_get:  # the route that answered, for the latency metrics
            scope["route"] = as_get["route"]
