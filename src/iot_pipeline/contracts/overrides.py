"""The operator override as stored (`<prefix>-qc-overrides`), and the Redis counter the API
moves on every override created or deleted: written by the API, read by the worker."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from iot_pipeline.schema import format_event_time
from iot_pipeline.vocabulary import OVERRIDE_PENDING, OverrideAction


def override_document(
    override_id: str,
    sensor_id: str,
    start: datetime,
    end: datetime,
    action: OverrideAction,
    reason: str,
    created_at: datetime,
) -> dict[str, Any]:
    """A new override as stored: pending until a worker settled it on the stored readings."""
    return {
        "id": override_id,
        "sensor_id": sensor_id,
        "start": format_event_time(start),
        "end": format_event_time(end),
        "action": action,
        "reason": reason,
        "status": OVERRIDE_PENDING,
        "created_at": format_event_time(created_at),
        "attempts": 0,
    }


def generation_key(prefix: str) -> str:
    """Redis counter the API moves on every override created or deleted: a range that saw
    it move while in flight settles the new overrides on its own readings."""
    return f"{prefix}:qc-overrides:generation"
