"""Sensors as the registry knows them (metadata, location, last seen, online or not), and
what operators declare of them (`/sensors/{sensor_id}/metadata`: an expected interval, a
calibration offset, an active period), which the cleaner applies to the readings cleaned
from then on. Declaring needs the API key, and answers 403 on a deployment without one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.exceptions import RequestValidationError

from iot_pipeline.api import registry
from iot_pipeline.api.deps import Conf, Store, check_values, key_required, not_found
from iot_pipeline.api.models.problems import problem_schema
from iot_pipeline.api.models.sensors import (
    Sensor,
    SensorList,
    SensorMetadata,
    SensorMetadataRequest,
)
from iot_pipeline.api.params import Districts, Metrics
from iot_pipeline.contracts.metadata import metadata_document
from iot_pipeline.indices import sensor_metadata_index
from iot_pipeline.settings import Settings

router = APIRouter(
    prefix="/sensors",
    tags=["sensors"],
    responses={
        422: {"description": "A parameter is invalid", **problem_schema()},
        503: {"description": "The search store is down", **problem_schema()},
    },
)


SensorId = Annotated[str, Path(min_length=1, max_length=64, description="The sensor's id.")]
# Declarations change how new readings are cleaned: never on a deployment anyone may call.
WRITER = [Depends(key_required("declaring a sensor changes how its readings are cleaned"))]
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong X-API-Key", **problem_schema()},
    403: {"description": "This deployment has no API_KEY set", **problem_schema()},
}


@router.get(
    "",
    response_model=SensorList,
    summary="Every sensor, with its status",
    description="From the sensor registry the workers keep (one document per sensor), and one "
    "search of their declarations (`declared`): the cost grows with the number of sensors, "
    f"not of readings. At most {registry.MAX_SENSORS} sensors, those with readings (a sensor "
    "declared before its first reading is not listed yet). A sensor is `online` when its "
    "newest reading is at most SENSOR_OFFLINE_AFTER_SECONDS old; readings dated more than 5 "
    "minutes after they were stored (skewed clocks) never make a sensor seen in the future.",
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
    "/{sensor_id}",
    response_model=Sensor,
    summary="One sensor",
    description="One document of the sensor registry and its declaration (`declared`): O(1). "
    "404 for a sensor without readings, even a declared one (see its `/metadata`).",
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


def _index(settings: Settings) -> str:
    return sensor_metadata_index(settings.search_index_prefix)


def _invalid_body(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


@router.get(
    "/{sensor_id}/metadata",
    response_model=SensorMetadata,
    summary="What an operator declared of one sensor",
    description="One document by id: O(1). Answers for a sensor declared before its first "
    "reading too.",
    responses={404: {"description": "Nothing declared of this sensor", **problem_schema()}},
)
async def get_metadata(sensor_id: SensorId, store: Store, settings: Conf) -> SensorMetadata:
    found = await registry.declarations(store, settings, [sensor_id])
    if sensor_id not in found:
        raise not_found(f"nothing declared of sensor {sensor_id!r}")
    return found[sensor_id]


@router.put(
    "/{sensor_id}/metadata",
    response_model=SensorMetadata,
    summary="Declare a sensor's interval, calibration offset or active period",
    description="Stores the declaration (replacing the sensor's previous one whole). Readings "
    "cleaned from then on get it: the offset added to their value, `inactive` (`X`) outside "
    "the active period, completeness counted at the interval; readings stored before keep "
    "what they were cleaned with. One registry read (the sensor's metric, when it has "
    "readings) and one write: O(1). Needs the API key (403 when the deployment has none).",
    dependencies=WRITER,
    responses=WRITE_RESPONSES,
)
async def put_metadata(
    sensor_id: SensorId, body: SensorMetadataRequest, store: Store, settings: Conf
) -> SensorMetadata:
    reported = await registry.metric_of(store, settings, sensor_id)
    if body.metric is not None and reported is not None and body.metric != reported:
        raise _invalid_body("metric", f"sensor {sensor_id!r} reports {reported}")
    document = metadata_document(
        sensor_id,
        datetime.now(UTC),
        metric=body.metric or reported,
        interval_s=body.interval_s,
        calibration_offset=body.calibration_offset,
        active_from=body.active_from,
        active_to=body.active_to,
        note=body.note,
    )
    await store.put(_index(settings), sensor_id, document)
    return SensorMetadata.model_validate(document)


@router.delete(
    "/{sensor_id}/metadata",
    status_code=204,
    response_class=Response,
    summary="Remove a sensor's declaration",
    description="Deletes it: readings cleaned from then on get the learned interval, no "
    "offset and no active period; stored readings keep what they were cleaned with. One "
    "delete: O(1). 404 when nothing was declared. Needs the API key (403 when the "
    "deployment has none).",
    dependencies=WRITER,
    responses={
        **WRITE_RESPONSES,
        404: {"description": "Nothing declared of this sensor", **problem_schema()},
    },
)
async def delete_metadata(sensor_id: SensorId, store: Store, settings: Conf) -> Response:
    if not await store.delete(_index(settings), sensor_id):
        raise not_found(f"nothing declared of sensor {sensor_id!r}")
    return Response(status_code=204)
