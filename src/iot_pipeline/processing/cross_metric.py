"""Apply the cross-metric rule to stored readings around what a range just indexed.

Runs after the range's readings are searchable (no lock): each of the two tasks holding a
pair's halves indexes and refreshes its half before it reads, so whichever reads second sees
both (both may, and then write the same flags). Flags are set (or cleared) by partial updates,
and the windows of every changed reading are recomputed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from iot_pipeline.aggregation.minutes import MAX_RANGES_PER_QUERY, contiguous_runs, time_ranges
from iot_pipeline.aggregation.windows import Window, windows_of
from iot_pipeline.cleaning import CleanReading
from iot_pipeline.cleaning.cross_metric_rule import (
    CROSS_METRICS,
    StationReading,
    cross_metric_violations,
)
from iot_pipeline.cleaning.overrides import VERDICT_FIELDS, rejudged, stored_screened
from iot_pipeline.contracts.readings import reading_id
from iot_pipeline.indices import readings_index, readings_pattern
from iot_pipeline.storage import IndexAction, SearchStore
from iot_pipeline.storage.base import search_all
from iot_pipeline.vocabulary import CROSS_METRIC

PAGE = 5000
_FIELDS = ["event_id", "station_id", "sensor_id", "district", "metric", "value", "event_time"]


def slot_runs(epochs: Iterable[float], interval: float) -> tuple[tuple[int, int], ...]:
    """The sample slots of these event times, contiguous slots as one [first, end) run."""
    return contiguous_runs(int(epoch // interval) for epoch in epochs)


def _stored_partners(
    store: SearchStore,
    prefix: str,
    stations: list[str],
    runs: tuple[tuple[int, int], ...],
    interval: float,
    own_sensors: list[str],
) -> list[dict[str, Any]]:
    """The stored PM readings of these stations in these runs of sample slots from other
    sensors than the range's own (those are in memory, just indexed), as search hits."""
    body: dict[str, Any] = {
        "_source": [*_FIELDS, *VERDICT_FIELDS],
        "query": {
            "bool": {
                "must_not": [{"terms": {"sensor_id": own_sensors}}],
                "filter": [
                    {"terms": {"station_id": stations}},
                    {"terms": {"metric": sorted(CROSS_METRICS)}},
                    time_ranges((first * interval, end * interval) for first, end in runs),
                ],
            }
        },
        # a total order: event ids are unique per sensor only
        "sort": [{"sensor_id": "asc"}, {"event_id": "asc"}],
    }
    return search_all(store, readings_pattern(prefix), body, PAGE)


def cross_metric_updates(
    store: SearchStore, prefix: str, kept: list[CleanReading], sample_interval: float
) -> tuple[list[IndexAction], set[Window]]:
    """Flag updates for the pairs around these readings, and the windows they change."""
    mine = [c for c in kept if c.reading.metric in CROSS_METRICS]
    if not mine:
        return [], set()
    # Only the sample slots the range's readings are in, never the span between its oldest
    # and newest: one reading days off (a skewed clock, a late upload) would otherwise fetch
    # every PM reading of those stations in between.
    runs = slot_runs((c.reading.event_time.timestamp() for c in mine), sample_interval)
    stations = sorted({c.reading.station_id for c in mine})
    own_sensors = sorted({c.reading.sensor_id for c in mine})
    hits: list[dict[str, Any]] = []
    for first in range(0, len(runs), MAX_RANGES_PER_QUERY):  # disjoint runs: no hit twice
        piece = runs[first : first + MAX_RANGES_PER_QUERY]
        hits += _stored_partners(store, prefix, stations, piece, sample_interval, own_sensors)
    # The range's own readings are as it just stored them: with the cleaner's flags (never
    # cross_metric), so only a violation can make an update of them.
    for clean in mine:
        r = clean.reading
        hits.append(
            {
                "_index": readings_index(prefix, r.event_time),
                "_id": reading_id(r.sensor_id, r.event_id),
                "_source": {
                    "event_id": r.event_id,
                    "station_id": r.station_id,
                    "sensor_id": r.sensor_id,
                    "district": r.district,
                    "metric": r.metric,
                    "value": r.value,
                    "epoch": r.event_time.timestamp(),
                    "flags": list(clean.flags),
                    "override": clean.override,
                    "screened": clean.screened,
                },
            }
        )
    readings = []
    for hit in hits:
        doc = hit["_source"]
        epoch = doc.get("epoch")
        readings.append(
            StationReading(
                doc["event_id"],
                doc["station_id"],
                doc["metric"],
                epoch
                if epoch is not None
                else datetime.fromisoformat(doc["event_time"]).timestamp(),
                float(doc["value"]),
                tuple(doc.get("flags", [])),
            )
        )
    violating = cross_metric_violations(readings, sample_interval)
    actions: list[IndexAction] = []
    windows: set[Window] = set()
    for hit, reading in zip(hits, readings, strict=True):
        has = CROSS_METRIC in reading.flags
        if has == (reading.event_id in violating):
            continue
        flags = [f for f in reading.flags if f != CROSS_METRIC] + ([] if has else [CROSS_METRIC])
        doc = hit["_source"]
        update = {"doc": rejudged(flags, stored_screened(doc), doc.get("override"))}
        actions.append(IndexAction(hit["_index"], hit["_id"], update, op="update"))
        windows |= windows_of(doc["sensor_id"], doc["district"], doc["metric"], reading.epoch)
    return actions, windows
