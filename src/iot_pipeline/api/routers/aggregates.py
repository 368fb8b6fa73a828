"""Window aggregates per sensor or district, metric and resolution."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from iot_pipeline.api import queries
from iot_pipeline.api.deps import Conf, Store, check_limit, check_range, check_values
from iot_pipeline.api.models.aggregates import Aggregate, AggregatePage
from iot_pipeline.api.models.problems import problem_schema
from iot_pipeline.api.params import End, Start
from iot_pipeline.indices import aggregates_pattern
from iot_pipeline.vocabulary import Metric, Resolution, Scope

router = APIRouter(
    prefix="/aggregates",
    tags=["aggregates"],
    responses={
        422: {"description": "A parameter is invalid", **problem_schema()},
        503: {"description": "The search store is down", **problem_schema()},
    },
)


@router.get(
    "",
    response_model=AggregatePage,
    summary="Tumbling-window statistics (count, min, max, mean, sum, std, completeness)",
    description="One search returning at most `limit` (at most API_MAX_LIMIT) windows of one "
    "resolution, sorted by (window start, key) and resumed with `cursor` (search_after: no "
    "deep paging). Each resolution's indices are time-bucketed (1m by day, 1h by month, 1d "
    "by year), so a `start`/`end` range only opens the indices it covers.",
)
async def list_aggregates(
    *,
    metric: Annotated[Metric, Query(description="The metric.")],
    resolution: Annotated[Resolution, Query(description="Window size.")] = "1h",
    scope: Annotated[Scope, Query()] = "district",
    key: Annotated[
        list[str] | None,
        Query(max_length=100, description="Sensor ids or district names (repeatable)."),
    ] = None,
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    store: Store,
    settings: Conf,
) -> AggregatePage:
    check_limit(settings, limit)
    check_range(start, end)
    check_values("key", key)
    after = queries.decode_cursor(cursor, queries.AGGREGATE_SORT_SHAPE) if cursor else None
    body = queries.aggregates_body(metric, scope, key, start, end, limit, after)
    index = aggregates_pattern(settings.search_index_prefix, resolution)
    hits = (await store.search(index, body))["hits"]["hits"]
    next_cursor = (
        queries.encode_cursor(queries.sort_values(hits[-1])) if len(hits) == limit else None
    )
    return AggregatePage(
        items=[Aggregate.model_validate(h["_source"]) for h in hits], next_cursor=next_cursor
    )
