"""The US EPA Air Quality Index per district or station and hour, from the hourly aggregates."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from iot_pipeline import aqi
from iot_pipeline.api import registry
from iot_pipeline.api.deps import Conf, Store, check_values, invalid
from iot_pipeline.api.models.aqi import AqiHour, AqiPage, AqiSubIndex
from iot_pipeline.api.models.problems import problem_schema
from iot_pipeline.api.params import End, Start
from iot_pipeline.indices import aggregates_pattern
from iot_pipeline.settings import Settings
from iot_pipeline.storage import AsyncSearchStore

router = APIRouter(
    prefix="/aqi",
    tags=["aqi"],
    responses={
        422: {"description": "A parameter is invalid", **problem_schema()},
        503: {"description": "The search store is down", **problem_schema()},
    },
)
MAX_HOURS = 72
SENSORS_PER_SEARCH = 100  # x (MAX_HOURS + LOOK_BACK) hourly documents: below 10,000
LOOK_BACK = 23  # hours before the first one asked for: the longest averaging period is 24 h
STANDARD = "US EPA AQI, EPA-454/B-24-002 (May 2024), Table 6"
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
Hourly = dict[str, dict[str, dict[int, float]]]  # key -> pollutant -> hour start -> mean


def _hour(moment: datetime) -> int:
    epoch = int(moment.astimezone(UTC).timestamp())
    return epoch - epoch % aqi.HOUR


@router.get(
    "",
    response_model=AqiPage,
    summary="Hourly air-quality index per district or station (US EPA AQI)",
    description=(
        "The AQI of each hour in [start, end) (default: the current hour, so far) per "
        "district or per station, from the hourly means of PM2.5, PM10 (24 h), O3 and CO (8 h) "
        f"and NO2 (1 h), following {STANDARD}. At most {MAX_HOURS} hours per request. "
        f"Districts: one search of at most districts x 5 pollutants x (hours + {LOOK_BACK}) "
        "hourly aggregates. Stations: the sensor registry names their pollutant sensors, then "
        f"one search per {SENSORS_PER_SEARCH} sensors of at most (hours + {LOOK_BACK}) hourly "
        "aggregates each."
    ),
)
async def air_quality(
    *,
    scope: Annotated[
        Literal["district", "station"],
        Query(description="One index per district (its pooled hourly means) or per station."),
    ] = "district",
    district: Annotated[
        list[str] | None, Query(max_length=50, description="Districts (repeatable); all if none.")
    ] = None,
    station: Annotated[
        list[str] | None,
        Query(max_length=100, description="Stations (repeatable, scope `station`); all if none."),
    ] = None,
    start: Start = None,
    end: End = None,
    store: Store,
    settings: Conf,
) -> AqiPage:
    check_values("district", district)
    check_values("station", station)
    if station and scope != "station":
        raise invalid("station", "only with scope=station")
    first, last = _hours(start, end)
    since = first - LOOK_BACK * aqi.HOUR
    places: dict[str, str] = {}  # station -> its district
    if scope == "district":
        hourly = await _hourly_means(store, settings, "district", district, since, last)
        asked = set(district or ())
    else:
        hourly, places = await _station_means(store, settings, district, station, since, last)
        asked = set(station or ()) & set(places)
    items = [
        _aqi_hour(name if scope == "district" else places[name], scope, name, hourly, hour)
        for name in sorted(asked | set(hourly))
        for hour in range(first, last + 1, aqi.HOUR)
    ]
    return AqiPage(standard=STANDARD, scope=scope, items=items)


def _hours(start: datetime | None, end: datetime | None) -> tuple[int, int]:
    """The first and last hour asked for (epoch seconds of their start): those of [start,
    end), by default the current hour."""
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
    return first, last


async def _station_means(
    store: AsyncSearchStore,
    settings: Settings,
    district: list[str] | None,
    station: list[str] | None,
    since: int,
    last: int,
) -> tuple[Hourly, dict[str, str]]:
    """Each station's hourly means (those of its pollutant sensors, which the registry names;
    one search per SENSORS_PER_SEARCH sensors), and its district."""
    found = await registry.sensors(store, settings, district=district, metric=list(aqi.POLLUTANTS))
    owners = {s.sensor_id: s.station_id for s in found if not station or s.station_id in station}
    places = {s.station_id: s.district for s in found if s.sensor_id in owners}
    hourly: Hourly = defaultdict(lambda: defaultdict(dict))
    ids = sorted(owners)
    for at in range(0, len(ids), SENSORS_PER_SEARCH):
        chunk = ids[at : at + SENSORS_PER_SEARCH]
        means = await _hourly_means(store, settings, "sensor", chunk, since, last)
        for sensor_id, by_metric in means.items():
            hourly[owners[sensor_id]].update(by_metric)
    return hourly, places


def _aqi_hour(district: str, scope: str, name: str, hourly: Hourly, hour: int) -> AqiHour:
    """The AQI of one district or station (`name`) for the hour starting at `hour`."""
    result = aqi.hour_aqi(hourly.get(name, {}), hour)
    named = result.category
    return AqiHour(
        district=district,
        station=None if scope == "district" else name,
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


async def _hourly_means(
    store: AsyncSearchStore,
    settings: Settings,
    scope: str,
    keys: list[str] | None,
    since: int,
    last: int,
) -> Hourly:
    """key -> pollutant -> hour start -> hourly mean, from the 1-hour aggregates."""
    filters: list[dict[str, Any]] = [
        {"term": {"scope": scope}},
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
    if keys:
        filters.append({"terms": {"key": keys}})
    body = {
        "size": 10_000,
        "query": {"bool": {"filter": filters}},
        "_source": ["key", "metric", "window_start", "mean", "count"],
    }
    pattern = aggregates_pattern(settings.search_index_prefix, "1h")
    hits = (await store.search(pattern, body))["hits"]["hits"]
    hourly: Hourly = defaultdict(lambda: defaultdict(dict))
    for hit in hits:
        doc = hit["_source"]
        if doc.get("mean") is None or not doc.get("count"):
            continue  # an hour of invalid readings only: no concentration
        start_epoch = int(
            datetime.fromisoformat(doc["window_start"].replace("Z", "+00:00")).timestamp()
        )
        hourly[doc["key"]][doc["metric"]][start_epoch] = float(doc["mean"])
    return hourly
