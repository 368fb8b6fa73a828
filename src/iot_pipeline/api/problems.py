"""Errors as RFC 9457 problem details: a clear message, the request id, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from iot_pipeline.api.queries import BadCursor
from iot_pipeline.errors import (
    KafkaUnavailable,
    PermanentStoreError,
    RedisUnavailable,
    StoreError,
    StoreRefused,
    TransientStoreError,
)

log = logging.getLogger("iot_pipeline.api")
PROBLEM = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Invalid parameter",
    502: "Search store error",
    503: "Search store unavailable",
}


def problem(
    request: Request,
    status: int,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    title: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", ""),
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _parameter(loc: tuple[Any, ...] | list[Any]) -> str:
    """The parameter an error is about: a query, path or header parameter by its name (a
    repeated one too: `metric`, not `metric.1`), a body field by its path."""
    if len(loc) >= 2 and loc[0] in ("query", "path", "header"):
        return str(loc[1])
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "(request)"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"parameter": _parameter(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['parameter']}: {e['message']}" for e in errors)
        return problem(request, 422, detail, errors)

    @app.exception_handler(BadCursor)
    async def _cursor(request: Request, exc: BadCursor) -> JSONResponse:
        return problem(request, 422, str(exc), [{"parameter": "cursor", "message": str(exc)}])

    @app.exception_handler(TransientStoreError)
    async def _down(request: Request, exc: TransientStoreError) -> JSONResponse:
        log.warning("search store unavailable: %s", exc)
        return problem(
            request,
            503,
            "the search store does not answer; retry shortly",
            headers={"Retry-After": "5"},
        )

    # not the store's 503: the title says which dependency to look at
    for cause, title, detail in (
        (KafkaUnavailable, "Kafka unavailable", "Kafka does not answer; retry shortly"),
        (
            RedisUnavailable,
            "Redis unavailable",
            "Redis (the ETL's run state) does not answer; retry shortly",
        ),
    ):
        app.add_exception_handler(cause, _unavailable(title, detail))

    @app.exception_handler(StoreRefused)
    async def _engine_refused(request: Request, exc: StoreRefused) -> JSONResponse:
        log.error("search engine refused this API's request for a reason of its own: %s", exc)
        return problem(
            request,
            502,
            "the search engine refused this API's login (a missing privilege or a write "
            "block): an operator must fix the deployment; the API's log has the engine's answer",
        )

    @app.exception_handler(PermanentStoreError)
    async def _refused(request: Request, exc: PermanentStoreError) -> JSONResponse:
        log.error("search store refused a query: %s", exc)
        return problem(request, 502, "the search store refused the query")

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        log.error("search store error: %s", exc)
        return problem(request, 502, "the search store failed")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return problem(request, exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(request, 500, "internal error; the request id identifies it in the logs")


def _unavailable(
    title: str, detail: str
) -> Callable[[Request, Exception], Coroutine[Any, Any, JSONResponse]]:
    """A 503 handler for a dependency other than the search store, named in the title."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s: %s", title, exc)
        return problem(request, 503, detail, headers={"Retry-After": "5"}, title=title)

    return handler
