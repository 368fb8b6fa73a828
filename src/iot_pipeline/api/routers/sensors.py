"""Sensors as their readings describe them: metadata, location, last seen, online or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from iot_pipeline.api import queries
from iot_pipeline.api.deps import Conf, Store, check_values, not_found, readings_pattern
from iot_pipeline.api.models import Sensor, SensorList, problem_schema
from iot_pipeline.api.routers.readings import Districts, Metrics
from iot_pipeline.settings import Settings
from iot_pipeline.storage import AsyncSearchStore

router = APIRouter(
    tags=["sensors"],
    responses={
        422: {"description": "A parameter is invalid", **problem_schema()},
        503: {"description": "The search store is down", **problem_schema()},
    },
)
MAX_SENSORS = 10_000


def _sensor(doc: dict[str, Any], now: datetime, offline_after: float) -> Sensor:
    last_seen = datetime.fromisoformat(doc["event_time"])
    online = (now - last_seen).total_seconds() <= offline_after
    return Sensor(
        sensor_id=doc["sensor_id"],
        station_id=doc["station_id"],
        district=doc["district"],
        metric=doc["metric"],
        unit=doc["unit"],
        location=doc["location"],
        firmware=doc["firmware"],
        last_seen=last_seen,
        last_value=doc["value"],
        status="online" if online else "offline",
    )


async def _sensors(
    store: AsyncSearchStore, settings: Settings, where: queries.ReadingFilter
) -> list[Sensor]:
    body = queries.sensors_body(where, MAX_SENSORS)
    result = await store.search(readings_pattern(settings), body)
    now = datetime.now(UTC)
    return [
        _sensor(
            b["latest"]["hits"]["hits"][0]["_source"], now, settings.sensor_offline_after_seconds
        )
        for b in result.get("aggregations", {}).get("sensors", {}).get("buckets", [])
    ]


def _not_future() -> datetime:
    # readings from the future (clock-skewed sensors) do not make a sensor "last seen" later
    return datetime.now(UTC) + timedelta(minutes=5)


@router.get("/sensors", response_model=SensorList, summary="Every sensor, with its status")
async def list_sensors(
    *,
    district: Districts = None,
    metric: Metrics = None,
    status: Annotated[Literal["online", "offline"] | None, Query()] = None,
    store: Store,
    settings: Conf,
) -> SensorList:
    check_values("district", district)
    where = queries.ReadingFilter(district=district, metric=list(metric or []), end=_not_future())
    sensors = await _sensors(store, settings, where)
    return SensorList(items=[s for s in sensors if status is None or s.status == status])


@router.get(
    "/sensors/{sensor_id}",
    response_model=Sensor,
    summary="One sensor",
    responses={404: {"description": "Unknown sensor", **problem_schema()}},
)
async def get_sensor(
    *,
    sensor_id: Annotated[str, Path(min_length=1, max_length=64)],
    store: Store,
    settings: Conf,
) -> Sensor:
    where = queries.ReadingFilter(sensor_id=[sensor_id], end=_not_future())
    found = await _sensors(store, settings, where)
    if not found:
        raise not_found(f"no sensor {sensor_id!r} has readings")
    return found[0]
