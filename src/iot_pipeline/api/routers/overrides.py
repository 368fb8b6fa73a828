"""Operators' quality-control overrides (MADIS's subjective lists): one sensor's readings
over a time range accepted (`G`) or rejected (`B`), at cleaning time and retroactively.

Writes store the override and ask a worker to settle it on the stored readings (apply, or
revert on DELETE); the answer does not wait for that: the override's `status` says where
it stands. Writes need the API key, and answer 403 on a deployment without one.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, time
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError

from iot_pipeline.api.deps import (
    Conf,
    Store,
    check_limit,
    check_values,
    key_required,
    not_found,
)
from iot_pipeline.api.models.overrides import (
    MAX_OVERRIDE_SPAN,
    QcOverride,
    QcOverrideList,
    QcOverrideRequest,
)
from iot_pipeline.api.models.problems import problem_schema
from iot_pipeline.api.params import SensorIds
from iot_pipeline.contracts.overrides import generation_key, override_document
from iot_pipeline.errors import StoreConflict
from iot_pipeline.indices import overrides_index
from iot_pipeline.schema import format_event_time
from iot_pipeline.settings import Settings
from iot_pipeline.vocabulary import (
    OVERRIDE_REMOVED,
    OVERRIDE_REMOVING,
    OverrideStatus,
)

log = logging.getLogger("iot_pipeline.api")
PREFIX = "/qc/overrides"
OverrideId = Annotated[
    str, Path(pattern="^[0-9a-f]{32}$", description="The override's id (32 hex digits).")
]


# Overrides change stored data: never on a deployment anyone may call.
require_key_configured = key_required("managing overrides changes stored readings and aggregates")


router = APIRouter(
    prefix=PREFIX,
    tags=["quality control"],
    responses={
        422: {"description": "A parameter or the body is invalid", **problem_schema()},
        503: {"description": "The search store is down", **problem_schema()},
    },
)
WRITER = [Depends(require_key_configured)]
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong X-API-Key", **problem_schema()},
    403: {"description": "This deployment has no API_KEY set", **problem_schema()},
}


def _index(settings: Settings) -> str:
    return overrides_index(settings.search_index_prefix)


def _invalid_body(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


async def _find(store: Store, settings: Settings, override_id: str) -> dict[str, Any] | None:
    """The override's hit (with its version), None when unknown."""
    body = {
        "size": 1,
        "seq_no_primary_term": True,
        "query": {"ids": {"values": [override_id]}},
    }
    hits = (await store.search(_index(settings), body))["hits"]["hits"]
    return hits[0] if hits else None


async def _send(request: Request, override_id: str, status: str) -> None:
    """Move the overrides' generation (ranges in flight settle the change on their own
    readings: processing.pipeline), then ask a worker to settle the override; when the broker
    cannot take it, the override stays as it is and the sweep sends it again
    (orchestration.override_sweep)."""
    from iot_pipeline.contracts.tasks import create_app, send_settle  # Celery only when writing

    settings: Settings = request.app.state.settings
    try:
        await request.app.state.run_state.incr(generation_key(settings.search_index_prefix))
    except redis.RedisError as exc:
        log.warning("override %s: generation not moved (%s)", override_id, exc)

    client = getattr(request.app.state, "celery", None)
    if client is None:
        client = request.app.state.celery = create_app(request.app.state.settings)
    try:
        await run_in_threadpool(send_settle, client, override_id)
    except Exception as exc:  # the override is stored: the sweep settles it later
        log.warning(
            "override %s stays %s until the sweep: not sent to the workers (%s)",
            override_id,
            status,
            exc,
        )


@router.post(
    "",
    status_code=201,
    response_model=QcOverride,
    summary="Accept or reject one sensor's readings over a time range",
    description="Stores the override (status `pending`; `Location` names it) and sends it to "
    "a worker, which applies it to the stored readings of [start, end) and recomputes their "
    "windows (revision + 1 where a window changed), then marks it `applied`. New readings "
    "get it at cleaning time already. One write and one message here; the worker's work "
    f"grows with the readings of the range, which is at most {MAX_OVERRIDE_SPAN.days} days "
    "long. Needs the API key (403 when the deployment has none).",
    dependencies=WRITER,
    responses=WRITE_RESPONSES,
)
async def create_override(
    body: QcOverrideRequest,
    request: Request,
    response: Response,
    store: Store,
    settings: Conf,
) -> QcOverride:
    earliest = datetime.combine(settings.event_time_earliest, time(), UTC)
    if body.start < earliest:
        raise _invalid_body("start", f"not before {earliest.date()} (EVENT_TIME_EARLIEST)")
    override_id = uuid.uuid4().hex
    document = override_document(
        override_id,
        body.sensor_id,
        body.start,
        body.end,
        body.action,
        body.reason,
        datetime.now(UTC),
    )
    await store.put(_index(settings), override_id, document)
    await _send(request, override_id, document["status"])
    response.headers["Location"] = f"{PREFIX}/{override_id}"
    return QcOverride.model_validate(document)


@router.get(
    "",
    response_model=QcOverrideList,
    summary="Operators' overrides, newest first",
    description="One search returning at most `limit` (at most API_MAX_LIMIT) overrides, "
    "newest first; filters `sensor_id` and `status` (repeatable).",
)
async def list_overrides(
    *,
    sensor_id: SensorIds = None,
    status: Annotated[
        list[OverrideStatus] | None, Query(description="Statuses (repeatable).")
    ] = None,
    limit: Annotated[int, Query(ge=1, description="How many.")] = 100,
    store: Store,
    settings: Conf,
) -> QcOverrideList:
    check_limit(settings, limit)
    check_values("sensor_id", sensor_id)
    where: list[dict[str, Any]] = []
    if sensor_id:
        where.append({"terms": {"sensor_id": sensor_id}})
    if status:
        where.append({"terms": {"status": list(status)}})
    body = {
        "size": limit,
        "query": {"bool": {"filter": where}},
        "sort": [{"created_at": "desc"}, {"id": "asc"}],
    }
    hits = (await store.search(_index(settings), body))["hits"]["hits"]
    return QcOverrideList(items=[QcOverride.model_validate(h["_source"]) for h in hits])


@router.get(
    "/{override_id}",
    response_model=QcOverride,
    summary="One override and where its settlement stands",
    description="One document by id: O(1).",
    responses={404: {"description": "Unknown override", **problem_schema()}},
)
async def get_override(override_id: OverrideId, store: Store, settings: Conf) -> QcOverride:
    hit = await _find(store, settings, override_id)
    if hit is None:
        raise not_found(f"no override {override_id!r}")
    return QcOverride.model_validate(hit["_source"])


# a DELETE that keeps losing the race against a worker's write gives up after this many reads
DELETE_ATTEMPTS = 3


@router.delete(
    "/{override_id}",
    status_code=202,
    response_model=QcOverride,
    summary="Lift an override: its readings are reverted retroactively",
    description="Marks the override `removing` and sends it to a worker, which restores the "
    "rules' verdict of its stored readings (unless another override covers them) and "
    "recomputes their windows, then marks it `removed` (the document stays, for the "
    f"record). At most {DELETE_ATTEMPTS} reads and one write here; repeating it is harmless. "
    "Needs the API key (403 when the deployment has none).",
    dependencies=WRITER,
    responses={
        **WRITE_RESPONSES,
        404: {"description": "Unknown override", **problem_schema()},
        409: {"description": "A worker kept changing it; try again", **problem_schema()},
    },
)
async def delete_override(
    override_id: OverrideId, request: Request, store: Store, settings: Conf
) -> QcOverride:
    for _ in range(DELETE_ATTEMPTS):
        hit = await _find(store, settings, override_id)
        if hit is None:
            raise not_found(f"no override {override_id!r}")
        document = hit["_source"]
        if document["status"] in (OVERRIDE_REMOVING, OVERRIDE_REMOVED):
            if document["status"] == OVERRIDE_REMOVING:  # its first message may be lost
                await _send(request, override_id, document["status"])
            return QcOverride.model_validate(document)
        removing = {
            **document,
            "status": OVERRIDE_REMOVING,
            "removal_requested_at": format_event_time(datetime.now(UTC)),
        }
        try:
            version = (int(hit["_seq_no"]), int(hit["_primary_term"]))
            await store.put(_index(settings), override_id, removing, version)
        except StoreConflict:
            continue  # a worker settled it meanwhile: read it again
        await _send(request, override_id, OVERRIDE_REMOVING)
        return QcOverride.model_validate(removing)
    raise HTTPException(409, f"override {override_id} kept changing; try again")
