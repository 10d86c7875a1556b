"""Request metrics of the API, by route template (never by raw path, which would carry ids)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from prometheus_client import Counter, Histogram

from crmsync.mapping_api.entrypoints.routes import API_PREFIX

API_REQUESTS = Counter(
    "crmsync_api_requests_total",
    "Mapping API requests, by method, route and status",
    ["method", "route", "status"],
)
API_LATENCY = Histogram(
    "crmsync_api_request_seconds",
    "Mapping API request duration, by method and route",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
)


def install(app: FastAPI) -> None:
    """Counts and times every request."""

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if isinstance(route, APIRoute):
                # API routes are reached through the /v1 router, which keeps its prefix to itself.
                template = API_PREFIX + template
            API_REQUESTS.labels(request.method, template, str(status)).inc()
            API_LATENCY.labels(request.method, template).observe(time.perf_counter() - start)
