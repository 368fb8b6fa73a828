"""Ground truth computed apart from the pipeline, and snapshots of what it stored."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from iot_pipeline.schema import METRICS, SensorReading
from iot_pipeline.storage import SearchStore


def document_id(sensor_id: str, event_id: str) -> str:
    """The documented id of a stored reading: `<sensor_id>:<event_id>`, with `%` and `:` of
    the sensor id percent-encoded."""
    return sensor_id.replace("%", "%25").replace(":", "%3A") + ":" + event_id


def expected_ids(produced: list[tuple[int, int, bytes]], partition: int | None = None) -> set[str]:
    """Events the store must hold: parseable, in a known unit (partition, offset, value)."""
    ids = set()
    for p, _, value in produced:
        if partition is not None and p != partition:
            continue
        try:
            reading = SensorReading.model_validate_json(value)
        except ValidationError:
            continue
        if reading.unit == METRICS[reading.metric].unit or reading.unit == "°F":
            ids.add(document_id(reading.sensor_id, reading.event_id))
    return ids


def snapshot(store: SearchStore, prefix: str) -> dict[str, Any]:
    """Every stored reading by id (paged by event id)."""
    index = f"{prefix}-readings-*"
    store.refresh(index)
    docs: dict[str, Any] = {}
    body: dict[str, Any] = {"size": 5000, "sort": [{"event_id": "asc"}]}
    while True:
        hits = store.search(index, body)["hits"]["hits"]
        docs.update({h["_id"]: h["_source"] for h in hits})
        if len(hits) < body["size"]:
            return docs
        body["search_after"] = hits[-1]["sort"]
