"""`python -m iot_pipeline.api.serve [--host H] [--port P]`: the API's server, with an edge
that holds (how `make up` and the container run it).

uvicorn as its command line cannot set it up: requests are parsed by h11 with a bound on the
request head (`API_MAX_HEADER_BYTES`; the httptools parser accepts heads of any size), and a
connection must send a complete request head within `API_HEADER_TIMEOUT_SECONDS` of opening
or of its last response, else it is closed. Without that deadline an idle socket (or one
sending a byte now and then) would stay open for ever. Idle keep-alive connections close
after 5 s. Requests in flight are bounded by the app (`API_LIMIT_CONCURRENCY`, see
iot_pipeline.api.edge), not by uvicorn, whose bound counts idle connections as well.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from iot_pipeline.api.app import create_app
from iot_pipeline.logs import configure
from iot_pipeline.settings import Settings, get_settings

KEEP_ALIVE_SECONDS = 5


class HeadDeadlineProtocol(H11Protocol):
    """h11 with a deadline for each request head (`header_timeout` seconds)."""

    header_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        waiting_after = self.cycle  # no new request since: the next head is still awaited
        self.loop.call_later(self.header_timeout, self._head_overdue, waiting_after)

    def _head_overdue(self, waiting_after: Any) -> None:
        if self.transport.is_closing() or self.cycle is not waiting_after:
            return  # a request head arrived meanwhile
        if waiting_after is not None and not waiting_after.response_complete:
            return
        with suppress(h11.LocalProtocolError):  # mid-message: closing is all there is to do
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()


def application() -> FastAPI:
    """The app as the server runs it (a factory: built inside the server's process)."""
    configure("api", get_settings().log_format)
    return create_app()


def server_config(settings: Settings, host: str, port: int) -> uvicorn.Config:
    """The server's configuration for these settings."""
    protocol = type(
        "HeadDeadline",
        (HeadDeadlineProtocol,),
        {"header_timeout": settings.api_header_timeout_seconds},
    )
    return uvicorn.Config(
        "iot_pipeline.api.serve:application",
        factory=True,
        host=host,
        port=port,
        http=protocol,
        h11_max_incomplete_event_size=settings.api_max_header_bytes,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # requests in flight are bounded by the app (edge.ConcurrencyLimit): uvicorn's own
        # bound counts idle connections too, so idle sockets could starve every route
        timeout_graceful_shutdown=5,  # an open event stream would hold a stop for its lifetime
        access_log=False,  # the app writes its own, one JSON line per request
        log_config=None,
    )


def main(argv: Sequence[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description="Serve the REST API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=settings.api_port, help="port")
    args = parser.parse_args(argv)
    uvicorn.Server(server_config(settings, args.host, args.port)).run()


if __name__ == "__main__":
    main()
