"""Operators' declarations of their sensors in the store (`<prefix>-sensor-metadata`, one
document per sensor, id = sensor_id), loaded once per range to apply at cleaning time
(cleaning.metadata).

Declarations have an index of their own rather than a place in the sensor registry: the
registry's documents are made by readings (its upsert script only ever moves a sensor
forward, and every reader of it counts on `last` and `last_seen`), while a sensor may be
declared before it ever sent a reading and a declaration is replaced or deleted at will.
Kept apart, neither has to make room for the other's rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from iot_pipeline.cleaning.metadata import Declaration
from iot_pipeline.indices import sensor_metadata_index
from iot_pipeline.schema import format_event_time
from iot_pipeline.storage import SearchStore
from iot_pipeline.storage.base import search_all

PAGE = 5000


def metadata_document(
    sensor_id: str,
    declared_at: datetime,
    *,
    metric: str | None = None,
    interval_s: float | None = None,
    calibration_offset: float | None = None,
    active_from: datetime | None = None,
    active_to: datetime | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """A declaration as stored (null where nothing is declared)."""
    return {
        "sensor_id": sensor_id,
        "metric": metric,
        "interval_s": interval_s,
        "calibration_offset": calibration_offset,
        "active_from": None if active_from is None else format_event_time(active_from),
        "active_to": None if active_to is None else format_event_time(active_to),
        "note": note,
        "declared_at": format_event_time(declared_at),
    }


def _epoch(stamp: str | None) -> float | None:
    if stamp is None:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def declaration_of(doc: dict[str, Any]) -> Declaration:
    """The cleaner's view of a stored declaration."""
    interval = doc.get("interval_s")
    offset = doc.get("calibration_offset")
    return Declaration(
        sensor_id=doc["sensor_id"],
        metric=doc.get("metric"),
        interval_s=None if interval is None else float(interval),
        calibration_offset=None if offset is None else float(offset),
        active_from=_epoch(doc.get("active_from")),
        active_to=_epoch(doc.get("active_to")),
    )


def metadata_pattern(prefix: str) -> str:
    """The declarations' index as a pattern: before the first declaration there is no index,
    and a pattern matching nothing is an empty answer, not an error."""
    return f"{sensor_metadata_index(prefix)}*"


def load_declarations(store: SearchStore, prefix: str) -> dict[str, Declaration]:
    """Every declaration, by sensor id: one search (a page per 5,000 sensors), nothing when
    none was ever made."""
    body = {"query": {"match_all": {}}, "sort": [{"sensor_id": "asc"}]}
    hits = search_all(store, metadata_pattern(prefix), body, PAGE)
    return {hit["_source"]["sensor_id"]: declaration_of(hit["_source"]) for hit in hits}
