"""The versioned sensor reading: one model shared by the simulator, the workers and the API.

`python -m iot_pipeline.schema` prints its JSON Schema (kept in `docs/schema/`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from iot_pipeline.vocabulary import Metric

SCHEMA_VERSION = 1

Unit = Literal["°C", "°F", "%", "µg/m³", "mg/m³"]


@dataclass(frozen=True)
class MetricSpec:
    """A metric's canonical unit, the range of values that are physically possible, and how
    far beyond it a working instrument may still read within its stated accuracy."""

    unit: str
    minimum: float
    maximum: float
    description: str
    tolerance: float = 0.0


METRICS: dict[str, MetricSpec] = {
    "temperature": MetricSpec("°C", -90.0, 60.0, "air temperature"),
    # Near saturation, relative-humidity sensors read a few %RH above 100 within their stated
    # accuracy (common capacitive sensors: +-2 to 3 %RH; BSRN Payerne reports 100.5 for
    # hours of fog): up to 105 is a measurement, beyond it a broken sensor.
    "humidity": MetricSpec("%", 0.0, 100.0, "relative humidity", tolerance=5.0),
    "pm25": MetricSpec("µg/m³", 0.0, 1000.0, "fine particulate matter (PM2.5)"),
    "pm10": MetricSpec("µg/m³", 0.0, 2000.0, "particulate matter (PM10)"),
    "no2": MetricSpec("µg/m³", 0.0, 2000.0, "nitrogen dioxide"),
    "o3": MetricSpec("µg/m³", 0.0, 1000.0, "ozone"),
    "co": MetricSpec("mg/m³", 0.0, 150.0, "carbon monoxide"),
}


class SensorReading(BaseModel):
    """One measurement of one sensor, as produced to Kafka (schema version 1)."""

    # strict: "41.5" is not a number and 1700000000 is not a time; cleaning must see that.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, title="SensorReading")

    schema_version: Literal[1] = Field(description="Version of this schema.")
    event_id: str = Field(min_length=1, max_length=128, description="Unique identity of the event.")
    sensor_id: str = Field(min_length=1, max_length=64, description="Sensor (the Kafka key).")
    station_id: str = Field(min_length=1, max_length=64, description="Station holding it.")
    district: str = Field(min_length=1, max_length=64, description="Casablanca district.")
    metric: Metric = Field(description="What is measured.")
    value: float = Field(allow_inf_nan=False, description="The measured value, in `unit`.")
    unit: Unit = Field(description="Unit of `value` (legacy sensors may report °F).")
    event_time: AwareDatetime = Field(description="When it was measured (UTC, ISO 8601).")
    seq: int = Field(ge=0, le=2**63 - 1, description="Per-sensor sequence number (int64).")
    lat: float = Field(ge=-90, le=90, description="Station latitude (WGS84).")
    lon: float = Field(ge=-180, le=180, description="Station longitude (WGS84).")
    battery_pct: float = Field(ge=0, le=100, description="Battery charge of the station.")
    firmware: str = Field(min_length=1, max_length=32, description="Sensor firmware version.")


def json_schema() -> dict[str, object]:
    """The reading's JSON Schema, with its version."""
    schema = SensorReading.model_json_schema()
    schema["$id"] = f"https://iot-pipeline.example/schema/sensor_reading.v{SCHEMA_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def format_event_time(moment: datetime) -> str:
    """The wire format of event times: UTC, milliseconds (truncated), `Z`."""
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def main() -> int:
    """Print the JSON Schema."""
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
