"""Cleaned readings: one reading with its provenance, a page of them, the latest per sensor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from iot_pipeline.vocabulary import Qc

_READING_EXAMPLE: dict[str, Any] = {
    "event_id": "2afbd6f8-6b-1f",
    "sensor_id": "casa-maarif-01-pm25",
    "station_id": "casa-maarif-01",
    "district": "Maarif",
    "metric": "pm25",
    "value": 18.4,
    "unit": "µg/m³",
    "original_value": 18.4,
    "original_unit": "µg/m³",
    "event_time": "2026-11-28T10:15:05.000Z",
    "seq": 31,
    "location": {"lat": 33.5731, "lon": -7.6298},
    "battery_pct": 87.5,
    "firmware": "3.0.2",
    "flags": [],
    "valid": True,
    "qc": "S",
    "schema_version": 1,
    "pipeline_version": "0.1.0",
    "batch_id": "scheduled__2026-11-28T10:16:00_00:00",
    "ingest_time": "2026-11-28T10:16:01.204Z",
    "kafka": {"topic": "iot_sensor_data", "partition": 3, "offset": 120931},
}


class Location(BaseModel):
    lat: float
    lon: float


class KafkaSource(BaseModel):
    topic: str
    partition: int
    offset: int


class Reading(BaseModel):
    """A cleaned reading: canonical value, quality flags and provenance."""

    model_config = ConfigDict(json_schema_extra={"examples": [_READING_EXAMPLE]})

    event_id: str
    sensor_id: str
    station_id: str
    district: str
    metric: str
    value: float
    unit: str
    original_value: float
    original_unit: str
    event_time: datetime
    seq: int
    location: Location
    battery_pct: float
    firmware: str
    flags: list[str] = Field(description="Why the reading is suspect; empty when clean.")
    valid: bool = Field(description="Whether it enters the aggregates.")
    qc: Qc | None = Field(
        None,
        description="The quality-control verdict: `S` passed levels 1 and 2 (validity, then "
        "consistency in time and within its station), `C` passed level 1 with no recent "
        "history for level 2 to judge it by, `Q` questioned by level 2 or 3, `X` rejected by "
        "level 1; `G` accepted and `B` rejected by an operator's override "
        "(docs/quality.md). Null for readings stored before the verdict existed.",
    )
    override: Qc | None = Field(
        None, description="`G` or `B` when an operator's override changed the verdict."
    )
    auto_qc: Qc | None = Field(
        None, description="With an override: the verdict the rules alone gave."
    )
    interval_s: float | None = Field(
        None, description="Its sensor's sampling interval when it was cleaned (see Sensor)."
    )
    resolution: float | None = Field(
        None, description="Its sensor's resolution when it was cleaned (see Sensor)."
    )
    calibration_offset: float | None = Field(
        None,
        description="The offset an operator declared for its sensor, added to `value` "
        "(`original_value` is what the sensor sent); null when none was declared when it was "
        "cleaned.",
    )
    schema_version: int
    pipeline_version: str
    batch_id: str
    ingest_time: datetime
    kafka: KafkaSource
    quarantined: bool | None = Field(
        None,
        description="True while its record sits in a quarantined range: it was stored, but "
        "its range kept failing after that (its flags or windows may be incomplete) until a "
        "clean run replays the range.",
    )


class ReadingPage(BaseModel):
    """One page of readings; pass `next_cursor` as `cursor` for the next one."""

    items: list[Reading]
    next_cursor: str | None = Field(description="Absent on the last page.")


class LatestReadings(BaseModel):
    items: list[Reading]
