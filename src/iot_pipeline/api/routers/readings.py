"""Cleaned readings: filtered, sorted, cursor-paginated; and the latest per sensor."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from iot_pipeline.api import queries, registry
from iot_pipeline.api.deps import (
    Conf,
    Store,
    check_limit,
    check_range,
    check_values,
    readings_pattern,
    source,
)
from iot_pipeline.api.models.problems import problem_schema
from iot_pipeline.api.models.readings import LatestReadings, ReadingPage
from iot_pipeline.api.params import Cursor, Districts, End, Limit, Metrics, SensorIds, Start
from iot_pipeline.contracts.readings import Reading
from iot_pipeline.vocabulary import Flag, Qc

router = APIRouter(
    prefix="/readings",
    tags=["readings"],
    responses={
        422: {"description": "A parameter is invalid", **problem_schema()},
        503: {"description": "The search store is down", **problem_schema()},
    },
)


@router.get(
    "",
    response_model=ReadingPage,
    summary="Cleaned readings with quality flags and provenance",
    description="One search returning at most `limit` (at most API_MAX_LIMIT) readings, "
    "resumed with `cursor` (search_after: no deep paging). The daily indices are sorted by "
    "event time on disk, so the default newest-first order stops after `limit` matches per "
    "index; `start`/`end` bound the indices and readings visited.",
)
async def list_readings(
    *,
    sensor_id: SensorIds = None,
    district: Districts = None,
    metric: Metrics = None,
    start: Start = None,
    end: End = None,
    quality: Annotated[
        queries.Quality,
        Query(description="`valid` (in the aggregates), `invalid`, `flagged` (any flag), `all`."),
    ] = "all",
    flag: Annotated[Flag | None, Query(description="Only readings with this flag.")] = None,
    qc: Annotated[
        list[Qc] | None,
        Query(description="Only readings with these quality-control verdicts (repeatable)."),
    ] = None,
    order: Annotated[queries.Order, Query(description="By event time.")] = "desc",
    limit: Limit = 100,
    cursor: Cursor = None,
    store: Store,
    settings: Conf,
) -> ReadingPage:
    check_limit(settings, limit)
    check_range(start, end)
    check_values("sensor_id", sensor_id)
    check_values("district", district)
    after = queries.decode_cursor(cursor, queries.READING_SORT_SHAPE) if cursor else None
    where = queries.ReadingFilter(
        sensor_id, district, list(metric or []), start, end, quality, flag, list(qc or [])
    )
    body = queries.readings_body(where, order, limit, after)
    hits = (await store.search(readings_pattern(settings), body))["hits"]["hits"]
    next_cursor = (
        queries.encode_cursor(queries.sort_values(hits[-1])) if len(hits) == limit else None
    )
    return ReadingPage(
        items=[Reading.model_validate(source(h)) for h in hits], next_cursor=next_cursor
    )


@router.get(
    "/latest",
    response_model=LatestReadings,
    summary="The latest reading of every sensor (the live view)",
    description="The sensor registry names each sensor's newest (valid) reading and one ids "
    "query fetches them: the cost grows with the number of sensors (at most "
    f"{registry.MAX_SENSORS}), not with `within_hours` or the readings stored. A reading "
    "whose verdict changed after it was stored (the cross-metric rule, the buddy check) is "
    "judged as stored now: a sensor whose newest valid reading was questioned since shows "
    "the valid one before it. For readings as they arrive, use `/stream/readings`.",
)
async def latest_readings(
    *,
    metric: Metrics = None,
    district: Districts = None,
    include_invalid: Annotated[
        bool, Query(description="Also consider readings that do not enter the aggregates.")
    ] = False,
    within_hours: Annotated[
        float,
        Query(gt=0, le=24 * 31, description="Only sensors heard from in this many hours."),
    ] = 1.0,
    store: Store,
    settings: Conf,
) -> LatestReadings:
    check_values("district", district)
    items = await registry.latest_readings(
        store,
        settings,
        district=district,
        metric=list(metric or []),
        include_invalid=include_invalid,
        within=timedelta(hours=within_hours),
    )
    return LatestReadings(items=items)
