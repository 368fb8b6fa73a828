"""How a cleaned reading is stored: its model (`Reading`, served as it is by the API), its
document, index and deterministic id.

The workers build each document as a plain dict on the hot path (`reading_document`); the
model declares its fields once, and a unit test holds the two, and the index mapping
(`elasticsearch/readings.template.json`), to each other. `STORED_ONLY` names what the store
keeps for the pipeline's own use and the API does not serve."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from iot_pipeline import __version__
from iot_pipeline.cleaning import CleanReading
from iot_pipeline.indices import readings_index
from iot_pipeline.schema import format_event_time
from iot_pipeline.storage import IndexAction
from iot_pipeline.storage.base import encode_action
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


# Stored with every reading but not served: the rules a later operator override re-judges
# the reading with (cleaning.overrides).
STORED_ONLY = frozenset({"screened"})


def reading_document(clean: CleanReading, batch_id: str, ingest_time: str) -> dict[str, Any]:
    """The stored form of a reading: canonical value, flags and provenance."""
    r = clean.reading
    document: dict[str, Any] = {
        "event_id": r.event_id,
        "sensor_id": r.sensor_id,
        "station_id": r.station_id,
        "district": r.district,
        "metric": r.metric,
        "value": r.value,
        "unit": r.unit,
        "original_value": clean.original_value,
        "original_unit": clean.original_unit,
        "event_time": format_event_time(r.event_time),
        "seq": r.seq,
        "location": {"lat": r.lat, "lon": r.lon},
        "battery_pct": r.battery_pct,
        "firmware": r.firmware,
        "flags": list(clean.flags),
        "valid": clean.valid,
        "qc": clean.qc,
        "screened": clean.screened,  # what later rules rejudge it with (cleaning.overrides)
        "interval_s": clean.counted_interval,
        "resolution": clean.resolution,
        "schema_version": r.schema_version,
        "pipeline_version": __version__,
        "batch_id": batch_id,
        "ingest_time": ingest_time,
        "kafka": _provenance(clean),
    }
    if clean.calibration_offset is not None:  # declared by an operator (cleaning.metadata)
        document["calibration_offset"] = clean.calibration_offset
    if clean.override is not None:  # an operator's verdict: the rules' one is kept beside it
        document["override"] = clean.override
        document["auto_qc"] = clean.auto_qc
    return document


def _provenance(clean: CleanReading) -> dict[str, Any]:
    """Where the reading was produced: a replayed dead letter's source, not the letter."""
    record = clean.source
    if record.source is not None:
        topic, partition, offset = record.source
        return {"topic": topic, "partition": partition, "offset": offset}
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def reading_id(sensor_id: str, event_id: str) -> str:
    """A reading's document id: its event id within its sensor, so two sensors that happen to
    use the same event id never overwrite each other (`%` and `:` escaped in the sensor id,
    so the first `:` always ends it)."""
    if "%" in sensor_id or ":" in sensor_id:
        sensor_id = sensor_id.replace("%", "%25").replace(":", "%3A")
    return f"{sensor_id}:{event_id}"


@dataclass
class Actions:
    """Index actions of readings, and the readings whose document could not be built."""

    actions: list[IndexAction] = field(default_factory=list)
    failed: list[tuple[CleanReading, Exception]] = field(default_factory=list)


def reading_actions(
    prefix: str, readings: Iterable[CleanReading], batch_id: str, ingest_time: datetime
) -> Actions:
    """Create each reading under its id, serialised now: the store keeps the first copy of an
    event whatever its age (a duplicate beyond the cleaner's memory, a retried range, a
    replay answer 409 and change nothing, never a second document); a reading whose
    document cannot be built or encoded is returned apart, not sent."""
    ingest = format_event_time(ingest_time)
    indices: dict[date, str] = {}  # formatting a date costs more than the rest of the action
    out = Actions()
    for clean in readings:
        try:
            day = clean.reading.event_time.date()
            index = indices.get(day)
            if index is None:
                index = indices[day] = readings_index(prefix, clean.reading.event_time)
            doc_id = reading_id(clean.reading.sensor_id, clean.reading.event_id)
            document = reading_document(clean, batch_id, ingest)
            encoded = encode_action("create", index, doc_id, document)
            out.actions.append(IndexAction(index, doc_id, document, op="create", encoded=encoded))
        except Exception as exc:  # one reading's document never stops a range
            out.failed.append((clean, exc))
    return out
