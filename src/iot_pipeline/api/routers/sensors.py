"""Sensors as the registry knows them: metadata, location, last seen, online or not."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from iot_pipeline.api import registry
from iot_pipeline.api.deps import Conf, Store, check_values, not_found
from iot_pipeline.api.models import Sensor, SensorList, problem_schema
from iot_pipeline.api.routers.readings import Districts, Metrics

router = APIRouter(
    tags=["sensors"],
    responses={
        422: {"description": "A parameter is invalid", **problem_schema()},
        503: {"description": "The search store is down", **problem_schema()},
    },
)


@router.get(
    "/sensors",
    response_model=SensorList,
    summary="Every sensor, with its status",
    description="From the sensor registry the workers keep (one document per sensor): the "
    f"cost grows with the number of sensors, not of readings. At most {registry.MAX_SENSORS} "
    "sensors. A sensor is `online` when its newest reading is at most "
    "SENSOR_OFFLINE_AFTER_SECONDS old; readings dated more than 5 minutes after they were "
    "stored (skewed clocks) never make a sensor seen in the future.",
)
async def list_sensors(
    *,
    district: Districts = None,
    metric: Metrics = None,
    status: Annotated[Literal["online", "offline"] | None, Query()] = None,
    store: Store,
    settings: Conf,
) -> SensorList:
    check_values("district", district)
    found = await registry.sensors(
        store, settings, district=district, metric=list(metric or []), status=status
    )
    return SensorList(items=found)


@router.get(
    "/sensors/{sensor_id}",
    response_model=Sensor,
    summary="One sensor",
    description="One document of the sensor registry: O(1).",
    responses={404: {"description": "Unknown sensor", **problem_schema()}},
)
async def get_sensor(
    *,
    sensor_id: Annotated[str, Path(min_length=1, max_length=64)],
    store: Store,
    settings: Conf,
) -> Sensor:
    found = await registry.sensors(store, settings, sensor_id=[sensor_id])
    if not found:
        raise not_found(f"no sensor {sensor_id!r} has readings")
    return found[0]
