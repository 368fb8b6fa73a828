"""Sensors as the registry knows them, and what operators declare of them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from iot_pipeline.api.edge import utc_moment
from iot_pipeline.contracts.readings import Location
from iot_pipeline.schema import METRICS
from iot_pipeline.vocabulary import Metric

MAX_DECLARED_INTERVAL = 86_400.0  # a day: the longest window completeness is counted over


class SensorMetadataRequest(BaseModel):
    """What an operator declares of one sensor; it applies to readings cleaned from then on
    (docs/quality.md). At least one of `interval_s`, `calibration_offset`, `active_from`,
    `active_to`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "metric": "temperature",
                    "interval_s": 3600,
                    "calibration_offset": -0.4,
                    "active_from": "2026-11-01T00:00:00Z",
                    "active_to": "2027-11-01T00:00:00Z",
                    "note": "recalibrated against the reference on 2026-10-28; ticket 4712",
                }
            ]
        },
    )

    metric: Metric | None = Field(
        None,
        description="The sensor's metric: the unit of `calibration_offset`, and the readings it "
        "applies to. Needed with `calibration_offset`; when the sensor has readings, it must "
        "be theirs.",
    )
    interval_s: float | None = Field(
        None,
        gt=0,
        le=MAX_DECLARED_INTERVAL,
        allow_inf_nan=False,
        description="The expected sampling interval in seconds (at most a day); completeness "
        "counts at it from the sensor's first reading, instead of the learned one.",
    )
    calibration_offset: float | None = Field(
        None,
        allow_inf_nan=False,
        description="Added to each reading's canonical value (after unit conversion), in the "
        "metric's canonical unit; at most the width of the metric's physical range either way.",
    )
    active_from: datetime | None = Field(
        None, description="In service from this event time (inclusive; without offset: UTC)."
    )
    active_to: datetime | None = Field(
        None, description="In service until this event time (exclusive)."
    )
    note: str | None = Field(None, max_length=500, description="Why (kept for the record).")

    @field_validator("active_from", "active_to")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc_moment(value)

    @model_validator(mode="after")
    def _consistent(self) -> SensorMetadataRequest:
        declared = (self.interval_s, self.calibration_offset, self.active_from, self.active_to)
        if all(value is None for value in declared):
            raise ValueError(
                "declare at least one of interval_s, calibration_offset, active_from, active_to"
            )
        if self.active_from and self.active_to and self.active_to <= self.active_from:
            raise ValueError("active_to must be after active_from")
        if self.calibration_offset is not None:
            if self.metric is None:
                raise ValueError("a calibration_offset needs its metric (its unit)")
            spec = METRICS[self.metric]
            width = spec.maximum - spec.minimum
            if abs(self.calibration_offset) > width:
                raise ValueError(
                    f"calibration_offset at most {width:g} {spec.unit} either way for "
                    f"{self.metric} (its physical range)"
                )
        return self


class SensorMetadata(BaseModel):
    """A sensor's declaration as stored."""

    sensor_id: str
    metric: Metric | None = None
    interval_s: float | None = None
    calibration_offset: float | None = None
    active_from: datetime | None = None
    active_to: datetime | None = None
    note: str | None = None
    declared_at: datetime = Field(description="When it was declared (or last replaced).")


class Sensor(BaseModel):
    """A sensor as its readings describe it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sensor_id": "casa-maarif-01-pm25",
                    "station_id": "casa-maarif-01",
                    "district": "Maarif",
                    "metric": "pm25",
                    "unit": "µg/m³",
                    "location": {"lat": 33.5731, "lon": -7.6298},
                    "firmware": "3.0.2",
                    "last_seen": "2026-11-28T10:15:05.000Z",
                    "last_value": 18.4,
                    "status": "online",
                }
            ]
        }
    )

    sensor_id: str
    station_id: str
    district: str
    metric: str
    unit: str
    location: Location
    firmware: str
    last_seen: datetime
    last_value: float
    status: Literal["online", "offline"]
    interval_s: float | None = Field(
        None,
        description="Its sampling interval in seconds, as its recent readings show it (the "
        "median gap); completeness is counted at it. Null until it has sent three.",
    )
    resolution: float | None = Field(
        None,
        description="The smallest step its values show (its quantisation step: docs/quality.md).",
    )
    declared: SensorMetadata | None = Field(
        None,
        description="What an operator declared of it (PUT /sensors/{sensor_id}/metadata); null "
        "when nothing. A declared `interval_s` wins over the learned one for completeness.",
    )


class SensorList(BaseModel):
    items: list[Sensor]
