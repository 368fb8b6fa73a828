"""Server-sent events: readings as they become searchable, with the /readings filters.

Each connection polls the store once a second for readings of batches newer than the moment
it connected (`ingest_time`, the batch clock), and remembers what it sent per batch until the
batch is older than the processing time limit, so a reading is sent once even though a
batch's ranges become visible at different moments.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from iot_pipeline.api import queries
from iot_pipeline.api.deps import Conf, Store, check_values, readings_pattern
from iot_pipeline.api.models import problem_schema
from iot_pipeline.api.routers.readings import Districts, Metrics, SensorIds
from iot_pipeline.errors import StoreError
from iot_pipeline.settings import Settings
from iot_pipeline.storage import AsyncSearchStore

router = APIRouter(
    tags=["stream"],
    responses={422: {"description": "A parameter is invalid", **problem_schema()}},
)
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
PAGE = 1000


def _event(doc: dict[str, Any]) -> str:
    return f"id: {doc['event_id']}\nevent: reading\ndata: {json.dumps(doc, ensure_ascii=False)}\n\n"


async def _events(
    request: Request,
    store: AsyncSearchStore,
    settings: Settings,
    where: queries.ReadingFilter,
) -> AsyncIterator[str]:
    since = datetime.now(UTC)
    keep_open = timedelta(seconds=settings.worker_task_time_limit_seconds + 60)
    sent: dict[str, set[str]] = {}  # ingest_time of an open batch -> event ids sent
    last_write = asyncio.get_running_loop().time()
    yield ": connected\n\n"
    while not await request.is_disconnected():
        body = queries.readings_body(where, "asc", PAGE, None)
        body["query"]["bool"]["filter"].append(
            {
                "range": {
                    "ingest_time": {"gte": queries.epoch_millis(since), "format": "epoch_millis"}
                }
            }
        )
        body["sort"] = [{"ingest_time": {"order": "asc"}}, {"event_id": {"order": "asc"}}]
        seen_ids = [i for ids in sent.values() for i in ids]
        if seen_ids:
            body["query"]["bool"]["must_not"] = [{"ids": {"values": seen_ids}}]
        try:
            hits = (await store.search(readings_pattern(settings), body))["hits"]["hits"]
        except StoreError:
            hits = []
            yield 'event: error\ndata: {"detail": "search store unavailable, retrying"}\n\n'
        for hit in hits:
            doc = hit["_source"]
            sent.setdefault(doc["ingest_time"], set()).add(hit["_id"])
            yield _event(doc)
        now = asyncio.get_running_loop().time()
        if hits:
            last_write = now
        elif now - last_write > HEARTBEAT_SECONDS:
            last_write = now
            yield ": keep-alive\n\n"
        # batches older than any task can take are complete: forget them, move the floor
        horizon = datetime.now(UTC) - keep_open
        for clock in [c for c in sent if datetime.fromisoformat(c) < horizon]:
            since = max(since, datetime.fromisoformat(clock) + timedelta(milliseconds=1))
            del sent[clock]
        if len(hits) < PAGE:
            await asyncio.sleep(POLL_SECONDS)


@router.get(
    "/stream/readings",
    summary="Live readings as server-sent events (filters: sensor, district, metric, quality)",
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
    store: Store,
    settings: Conf,
) -> StreamingResponse:
    check_values("sensor_id", sensor_id)
    check_values("district", district)
    where = queries.ReadingFilter(sensor_id, district, list(metric or []), quality=quality)
    return StreamingResponse(
        _events(request, store, settings, where),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
