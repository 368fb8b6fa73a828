"""Server-sent events: one client's frames (what it missed, live events in bursts,
heartbeats, the end of its lifetime) and the response that holds its slot while it lasts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from iot_pipeline.api.live.hub import Client, Event, LiveHub
from iot_pipeline.errors import TransientError

log = logging.getLogger("iot_pipeline.api.live")
BURST = 500  # events sent in one write at most
GAP = 'event: gap\ndata: {"detail": "events before this point are no longer buffered; read /readings for them"}\n\n'  # noqa: E501
END = 'event: end\ndata: {"detail": "stream lifetime reached; reconnect"}\n\n'
OVERFLOW = (
    'event: overflow\ndata: {"detail": "too slow to keep up; reconnect with Last-Event-ID"}\n\n'
)
KEEP_ALIVE = ": keep-alive\n\n"


class StreamStalled(TransientError):
    """A client stopped reading: one write waited longer than the send timeout."""


class EventStream(StreamingResponse):
    """An SSE response that holds its client's slot from the moment the route reserved it
    (`hub.subscribe`, before the response starts: the client cap is never check-then-act)
    until the response ends, however it ends; and gives each write `send_timeout` seconds,
    so a client that stops reading frees its slot instead of holding it for ever."""

    def __init__(
        self,
        content: AsyncIterator[str],
        release: Callable[[], None],
        send_timeout: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.release = release
        self.send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def timed(message: Message) -> None:
            try:
                await asyncio.wait_for(send(message), self.send_timeout)
            except TimeoutError as exc:
                raise StreamStalled from exc

        try:
            await super().__call__(scope, receive, timed)
        except* StreamStalled:
            log.info("live stream: a client stopped reading for %.0fs; closed", self.send_timeout)
        finally:
            self.release()
            closing = getattr(self.body_iterator, "aclose", None)
            if closing is not None:
                with contextlib.suppress(RuntimeError):  # still running: it ends by itself
                    await closing()


async def stream(
    hub: LiveHub,
    client: Client,
    backlog: list[Event],
    gap: bool,
    is_disconnected: Callable[[], Any],
) -> AsyncIterator[str]:
    """One client's SSE frames: what it missed, then live events, heartbeats, and an end after
    API_STREAM_MAX_SECONDS (the browser reconnects with its last id). The route subscribed
    the client (its slot); it leaves the hub however the response ends."""
    settings = hub.settings
    deadline = time.monotonic() + settings.api_stream_max_seconds
    try:
        yield f"retry: 2000\n: connected {hub.epoch}\n\n"
        if gap:
            yield GAP
        for event in backlog:
            yield _frame(hub, event)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                yield END
                return
            try:
                item = await asyncio.wait_for(
                    client.queue.get(), min(settings.api_stream_heartbeat_seconds, remaining)
                )
            except TimeoutError:
                if await is_disconnected():
                    return
                yield KEEP_ALIVE
                continue
            if item is None:  # the server is stopping
                return
            frames, stopping = _burst(hub, client, item)
            yield frames
            if stopping:
                return
            if client.overflowed and client.queue.empty():
                yield OVERFLOW
                return
    finally:
        hub.unsubscribe(client)


def _burst(hub: LiveHub, client: Client, first: Event) -> tuple[str, bool]:
    """`first` and what else waits in the client's queue (at most BURST events), for one
    write: one send per burst, not per event; and whether the server is stopping."""
    frames = [_frame(hub, first)]
    while len(frames) < BURST and not client.queue.empty():
        more = client.queue.get_nowait()
        if more is None:
            return "".join(frames), True
        frames.append(_frame(hub, more))
    return "".join(frames), False


def _frame(hub: LiveHub, event: Event) -> str:
    return f"id: {hub.event_id(event)}\n{event.text}"
