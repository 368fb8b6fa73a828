"""Request ids, one JSON access-log line per request, Prometheus metrics, the API key."""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

access_log = logging.getLogger("iot_pipeline.api.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")


def install(app: FastAPI) -> CollectorRegistry:
    """Middleware for request ids, access logs and metrics; returns the metrics registry."""
    registry = CollectorRegistry()
    requests = Counter(
        "api_requests",
        "Requests by route and status",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "api_request_seconds",
        "Request duration by route",
        ["method", "route"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )

    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = request_id
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = getattr(request.scope.get("route"), "path", "unmatched")
        response.headers["X-Request-ID"] = request_id
        requests.labels(request.method, route, str(response.status_code)).inc()
        latency.labels(request.method, route).observe(elapsed)
        access_log.info(
            "%s %s %d",
            request.method,
            request.url.path,
            response.status_code,
            extra={
                "fields": {
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.url.path,
                    "route": route,
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": request.client.host if request.client else None,
                }
            },
        )
        return response

    return registry


def metrics_response(registry: CollectorRegistry, extra: bytes = b"") -> Response:
    """The registry's metrics, followed by `extra` (metrics collected for this scrape)."""
    return Response(generate_latest(registry) + extra, media_type=CONTENT_TYPE_LATEST)


def require_api_key(expected: str) -> Callable[..., Awaitable[None]]:
    """A dependency enforcing `X-API-Key` when a key is configured (constant-time compare)."""

    async def check(given: str | None = Depends(API_KEY_HEADER)) -> None:
        if not expected:
            return
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong X-API-Key header",
                headers={"WWW-Authenticate": "ApiKey"},
            )

    return check
