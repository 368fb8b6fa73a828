"""How a cleaned reading is stored: its document, index and deterministic id."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from iot_pipeline import __version__
from iot_pipeline.cleaning import CleanReading
from iot_pipeline.schema import format_event_time
from iot_pipeline.storage import IndexAction, readings_index


def reading_document(clean: CleanReading, batch_id: str, ingest_time: str) -> dict[str, Any]:
    """The stored form of a reading: canonical value, flags and provenance."""
    r = clean.reading
    return {
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
        "schema_version": r.schema_version,
        "pipeline_version": __version__,
        "batch_id": batch_id,
        "ingest_time": ingest_time,
        "kafka": {
            "topic": clean.source.topic,
            "partition": clean.source.partition,
            "offset": clean.source.offset,
        },
    }


def reading_actions(
    prefix: str, readings: Iterable[CleanReading], batch_id: str, ingest_time: datetime
) -> list[IndexAction]:
    """Index each reading under its event id: replays overwrite, never duplicate."""
    ingest = format_event_time(ingest_time)
    indices: dict[date, str] = {}  # formatting a date costs more than the rest of the action
    actions = []
    for clean in readings:
        day = clean.reading.event_time.date()
        index = indices.get(day)
        if index is None:
            index = indices[day] = readings_index(prefix, clean.reading.event_time)
        actions.append(
            IndexAction(index, clean.reading.event_id, reading_document(clean, batch_id, ingest))
        )
    return actions
