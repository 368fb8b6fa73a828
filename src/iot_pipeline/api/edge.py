"""The API's edge: what every request meets before any route, key check or body parsing.

- a bound on requests in flight (`API_LIMIT_CONCURRENCY`, 503 beyond): requests, not
  connections, so idle sockets cannot starve the routes;
- a body limit (`API_MAX_BODY_BYTES`): a declared `Content-Length` beyond it is answered 413
  at once, and a body sent without one (chunked) is taken in here up to the limit (413
  past it), so no route reads or parses a large body, whatever its key;
- a Host allow-list (`API_ALLOWED_HOSTS`, Starlette's TrustedHostMiddleware): a page served
  under a hostile name (DNS rebinding) cannot call the API;
- security headers: `nosniff` and a referrer policy on every response, and on HTML pages
  that set none of their own a policy that forbids framing them and loading bases or forms
  from elsewhere;
- request times that mean something: an ISO 8601 time without an offset is UTC, and one
  outside [1970, 2100) is a 422 (`Moment`), never a 500 from an overflow at the calendar's
  edges.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def utc_moment(value: datetime) -> datetime:
    """A request's time as an aware UTC datetime within [EARLIEST, LATEST)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError("a time between 1970 and 2100") from exc
    if not EARLIEST <= value < LATEST:
        raise ValueError("a time between 1970 and 2100")
    return value


Moment = Annotated[datetime, AfterValidator(utc_moment)]


class ConcurrencyLimit:
    """ASGI middleware: at most `limit` requests in flight (streams included); beyond, 503
    with Retry-After. Idle connections are not requests: they cost no slot here, and the
    server closes them when their head is overdue (iot_pipeline.api.serve)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            await _problem(
                send,
                scope,
                503,
                "Service Unavailable",
                f"{self.active} requests are in flight (API_LIMIT_CONCURRENCY); retry shortly",
                [(b"retry-after", b"1")],
            )
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


async def _problem(
    send: Send,
    scope: Scope,
    status: int,
    title: str,
    detail: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with a problem document, from the edge (before any route)."""
    body = json.dumps(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope.get("path", ""),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A receive channel giving `messages` first, then `then`'s (a disconnect, later)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


class BodyLimit:
    """ASGI middleware: 413 for a body larger than `limit` bytes, before anything reads it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.limit:
                await self._refuse(scope, send)
                return
            await self.app(scope, receive, send)
            return
        if b"transfer-encoding" not in headers:  # no body
            await self.app(scope, receive, send)
            return
        # a body of unknown length: taken in here, up to the limit, then handed on whole
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._refuse(scope, send)
                return
            if not message.get("more_body", False):
                break
        whole = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        detail = f"the request body is limited to {self.limit} bytes"
        await _problem(send, scope, 413, "Payload Too Large", detail, [(b"connection", b"close")])


# What an HTML page without a policy of its own gets: no framing, no foreign base or form
# target (the documentation pages run the vendored Swagger UI and ReDoc, whose inline
# bootstrap scripts a stricter script policy would block).
PAGE_POLICY = "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
EVERY_RESPONSE = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))


class SecurityHeaders:
    """ASGI middleware adding the security headers a response lacks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in EVERY_RESPONSE if n not in present]
                content_type = dict(headers).get(b"content-type", b"")
                if content_type.startswith(b"text/html"):
                    if b"content-security-policy" not in present:
                        headers.append((b"content-security-policy", PAGE_POLICY.encode()))
                    if b"x-frame-options" not in present:
                        headers.append((b"x-frame-options", b"DENY"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def allowed_hosts(setting: str) -> list[str]:
    """The Host names the API answers to (`API_ALLOWED_HOSTS`, comma-separated; `*` any)."""
    return [h.strip() for h in setting.split(",") if h.strip()] or ["*"]
