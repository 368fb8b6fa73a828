"""The US EPA Air Quality Index per district and hour, from the hourly aggregates."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from iot_pipeline import aqi
from iot_pipeline.api.deps import Conf, Store, check_values, invalid
from iot_pipeline.api.models import AqiHour, AqiPage, AqiSubIndex, problem_schema
from iot_pipeline.api.routers.readings import End, Start
from iot_pipeline.indices import aggregates_pattern

router = APIRouter(
    tags=["aqi"],
    responses={
        422: {"description": "A parameter is invalid", **problem_schema()},
        503: {"description": "The search store is down", **problem_schema()},
    },
)
MAX_HOURS = 72
LOOK_BACK = 23  # hours before the first one asked for: the longest averaging period is 24 h
STANDARD = "US EPA AQI, EPA-454/B-24-002 (May 2024), Table 6"
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _hour(moment: datetime) -> int:
    epoch = int(moment.astimezone(UTC).timestamp())
    return epoch - epoch % aqi.HOUR


@router.get(
    "/aqi",
    response_model=AqiPage,
    summary="Hourly air-quality index per district (US EPA AQI)",
    description=(
        "The AQI of each hour in [start, end) (default: the current hour, so far) per "
        "district, from the hourly means of PM2.5, PM10 (24 h), O3 and CO (8 h) and NO2 (1 h), "
        f"following {STANDARD}. At most {MAX_HOURS} hours per request; one search of at most "
        f"districts x 5 pollutants x (hours + {LOOK_BACK}) hourly aggregates."
    ),
)
async def air_quality(
    *,
    district: Annotated[
        list[str] | None, Query(max_length=50, description="Districts (repeatable); all if none.")
    ] = None,
    start: Start = None,
    end: End = None,
    store: Store,
    settings: Conf,
) -> AqiPage:
    check_values("district", district)
    for name, moment in (("start", start), ("end", end)):
        if moment is not None and not EARLIEST <= moment.astimezone(UTC) <= LATEST:
            raise invalid(name, "must be between 1970 and 9000")
    now = datetime.now(UTC)
    last = _hour(end - timedelta(microseconds=1)) if end is not None else _hour(now)
    first = _hour(start) if start is not None else last
    if last < first:
        raise invalid("end", "must be after start")
    if (last - first) // aqi.HOUR + 1 > MAX_HOURS:
        raise invalid("end", f"at most {MAX_HOURS} hours per request")
    since = first - LOOK_BACK * aqi.HOUR
    filters: list[dict[str, Any]] = [
        {"term": {"scope": "district"}},
        {"terms": {"metric": list(aqi.POLLUTANTS)}},
        {
            "range": {
                "window_start": {
                    "gte": since * 1000,
                    "lte": last * 1000,
                    "format": "epoch_millis",
                }
            }
        },
    ]
    if district:
        filters.append({"terms": {"key": district}})
    body = {
        "size": 10_000,
        "query": {"bool": {"filter": filters}},
        "_source": ["key", "metric", "window_start", "mean", "count"],
    }
    hits = (await store.search(aggregates_pattern(settings.search_index_prefix, "1h"), body))[
        "hits"
    ]["hits"]
    hourly: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for hit in hits:
        doc = hit["_source"]
        if doc.get("mean") is None or not doc.get("count"):
            continue  # an hour of invalid readings only: no concentration
        start_epoch = int(
            datetime.fromisoformat(doc["window_start"].replace("Z", "+00:00")).timestamp()
        )
        hourly[doc["key"]][doc["metric"]][start_epoch] = float(doc["mean"])
    items = []
    for name in sorted(set(district or ()) | set(hourly)):
        for hour in range(first, last + 1, aqi.HOUR):
            result = aqi.hour_aqi(hourly.get(name, {}), hour)
            named = result.category
            items.append(
                AqiHour(
                    district=name,
                    hour_start=datetime.fromtimestamp(hour, UTC),
                    hour_end=datetime.fromtimestamp(hour + aqi.HOUR, UTC),
                    aqi=result.aqi,
                    category=named[0] if named else None,
                    color=named[1] if named else None,
                    dominant=result.dominant,
                    sub_indices=[
                        AqiSubIndex(
                            metric=s.metric,
                            concentration=s.concentration,
                            unit=s.unit,
                            averaging_hours=s.hours,
                            index=s.index,
                        )
                        for s in result.sub_indices
                    ],
                )
            )
    return AqiPage(standard=STANDARD, items=items)
