"""Ground truth computed apart from the pipeline, and snapshots of what it stored."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from iot_pipeline.schema import METRICS, SensorReading
from iot_pipeline.settings import Settings
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


def aggregates(store: SearchStore, prefix: str) -> dict[str, Any]:
    """Every stored aggregate by id (all resolutions)."""
    docs: dict[str, Any] = {}
    for resolution in ("1m", "1h", "1d"):
        index = f"{prefix}-agg-{resolution}-*"
        store.refresh(index)
        # (scope, key, metric, window_start) is unique within a resolution: page on it
        body: dict[str, Any] = {
            "size": 5000,
            "sort": [{"scope": "asc"}, {"key": "asc"}, {"metric": "asc"}, {"window_start": "asc"}],
        }
        while True:
            hits = store.search(index, body)["hits"]["hits"]
            docs.update({h["_id"]: h["_source"] for h in hits})
            if len(hits) < body["size"]:
                break
            body["search_after"] = hits[-1]["sort"]
    return docs


def offline_windows(readings: dict[str, Any]) -> dict[tuple[str, str, str, str, str], list[float]]:
    """Valid readings grouped per window, computed here with plain Python."""
    sizes = {"1m": 60, "1h": 3600, "1d": 86400}
    groups: dict[tuple[str, str, str, str, str], list[float]] = defaultdict(list)
    for doc in readings.values():
        if not doc["valid"]:
            continue
        epoch = datetime.fromisoformat(doc["event_time"]).timestamp()
        for resolution, size in sizes.items():
            start = datetime.fromtimestamp(epoch // size * size, UTC)
            stamp = start.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            groups[("sensor", doc["sensor_id"], doc["metric"], resolution, stamp)].append(
                doc["value"]
            )
            groups[("district", doc["district"], doc["metric"], resolution, stamp)].append(
                doc["value"]
            )
    return groups


def assert_aggregates_match(store: SearchStore, prefix: str) -> int:
    """Every window with valid readings equals the offline computation over the stored valid
    readings, and no other window has values; returns how many windows were compared."""
    truth = offline_windows(snapshot(store, prefix))
    with_values: dict[tuple[str, ...], Any] = {
        (a["scope"], a["key"], a["metric"], a["resolution"], a["window_start"]): a
        for a in aggregates(store, prefix).values()
        if a["count"] > 0
    }
    assert_windows_equal(truth, with_values)
    return len(truth)


def assert_windows_equal(
    truth: dict[tuple[str, str, str, str, str], list[float]],
    stored: dict[tuple[str, ...], Any],
) -> None:
    """The same windows, each with the count, extremes, sum, mean and spread of its values."""
    assert set(stored) == set(truth)
    for window, values in truth.items():
        doc = stored[window]
        assert doc["count"] == len(values), window
        assert doc["min"] == min(values), window
        assert doc["max"] == max(values), window
        assert doc["sum"] == pytest.approx(math.fsum(values), rel=1e-12, abs=1e-6), window
        assert doc["mean"] == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-9)
        assert doc["std"] == pytest.approx(statistics.pstdev(values), rel=1e-9, abs=1e-9)


def assert_stored_once_and_exact(settings: Settings, windows_at_least: int = 1) -> None:
    """Everything the pipeline's sensor topic holds is stored, once, under its id (what
    `expected_ids` says of the records), and every window equals an offline computation."""
    from iot_pipeline.storage import make_store

    from support.kafka_io import as_produced, consume_all

    produced = consume_all(settings, settings.kafka_sensor_data_topic, 10**9, idle_seconds=3)
    store = make_store(settings)
    try:
        stored = snapshot(store, settings.search_index_prefix)
        assert set(stored) == expected_ids(as_produced(produced))
        assert assert_aggregates_match(store, settings.search_index_prefix) >= windows_at_least
    finally:
        store.close()
