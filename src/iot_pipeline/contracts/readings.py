"""How a cleaned reading is stored: its document, index and deterministic id."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from iot_pipeline import __version__
from iot_pipeline.cleaning import CleanReading
from iot_pipeline.indices import readings_index
from iot_pipeline.schema import format_event_time
from iot_pipeline.storage import IndexAction
from iot_pipeline.storage.base import encode_action


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
