"""Server-sent events: readings within seconds of reaching Kafka, then as stored.

All clients of an API process share one live hub (`api.live`): one Kafka consumer and one
Redis subscription, whatever their number; filters apply in the fan-out.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from iot_pipeline.api import live, queries
from iot_pipeline.api.deps import check_values
from iot_pipeline.api.models.problems import problem_schema
from iot_pipeline.api.params import Districts, Metrics, SensorIds
from iot_pipeline.api.problems import problem

router = APIRouter(
    prefix="/stream",
    tags=["stream"],
    responses={
        422: {"description": "A parameter is invalid", **problem_schema()},
        429: {"description": "Too many streams are open on this process", **problem_schema()},
        503: {"description": "The live path is disabled", **problem_schema()},
    },
)

STREAM_DESCRIPTION = """
Each event is one reading (`event: reading`, `data` the reading as JSON, with `id` its
document id and `provisional`):

* `provisional: true` within about a second of the reading reaching Kafka, judged by the rules
  that need no history (schema, units, physical range, clock);
* `provisional: false` once the batch stored it, under the same `id`, with the batch's full
  verdict (`flags`, `valid`): it replaces the provisional one.

Reconnect with `Last-Event-ID` (browsers do) to get what was missed while this process still
buffers it (`API_STREAM_BUFFER` events); otherwise an `event: gap` says to read `/readings`.
A quiet stream sends a comment every `API_STREAM_HEARTBEAT_SECONDS`; a stream ends after
`API_STREAM_MAX_SECONDS` (`event: end`), and a client too slow to keep up gets
`event: overflow` and is disconnected. Worst case per process: `API_STREAM_MAX_CLIENTS`
streams (beyond: 429), no search query at all.
"""


@router.get(
    "/readings",
    summary="Live readings as server-sent events (filters: sensor, district, metric, quality)",
    description=STREAM_DESCRIPTION,
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An event stream"}},
)
async def stream_readings(
    *,
    request: Request,
    sensor_id: SensorIds = None,
    district: Districts = None,
    metric: Metrics = None,
    quality: Annotated[queries.Quality, Query()] = "all",
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="The id of the last event received."),
    ] = None,
) -> Response:
    check_values("sensor_id", sensor_id)
    check_values("district", district)
    hub: live.LiveHub | None = request.app.state.live
    if hub is None:
        return problem(
            request, 503, "the live path is off (API_LIVE_ENABLED=false)", title="Live disabled"
        )
    if hub.full:
        return problem(
            request,
            429,
            f"{len(hub.clients)} streams are open on this API process (API_STREAM_MAX_CLIENTS); "
            "retry later",
            headers={"Retry-After": "5"},
            title="Too many streams",
        )
    wants = live.Filter(
        frozenset(sensor_id or ()), frozenset(district or ()), frozenset(metric or ()), quality
    )
    # the slot is taken now, in the same step as the check above (no await between them)
    gap = last_event_id is not None and not hub.resumable(last_event_id)
    client, backlog = hub.subscribe(wants, last_event_id)
    return live.EventStream(
        live.stream(hub, client, backlog, gap, request.is_disconnected),
        release=partial(hub.unsubscribe, client),
        send_timeout=hub.settings.api_stream_send_timeout_seconds,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
