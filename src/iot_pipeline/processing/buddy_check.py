"""The buddy check (cleaning.buddy_rule) on stored readings, for the slots a range touched.

Neighbouring stations' sensors land on different partitions, so, like the cross-metric rule,
this runs after the range's readings are searchable: whichever range of a slot comes last
sees all of it, and each re-judges the whole slot, so the verdict does not depend on the
order of arrival. Cost per range: one composite aggregation per metric over the touched
slots (one mean and one location per sensor and slot), and searches for readings only
where a verdict changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from iot_pipeline.aggregation.minutes import MAX_RANGES_PER_QUERY, contiguous_runs, time_ranges
from iot_pipeline.aggregation.windows import Window, windows_of
from iot_pipeline.cleaning import CleanReading
from iot_pipeline.cleaning.buddy_rule import BUDDY_SLOT, SlotValue, spatial_outliers
from iot_pipeline.cleaning.overrides import VERDICT_FIELDS, rejudged, stored_screened
from iot_pipeline.indices import readings_pattern
from iot_pipeline.storage import IndexAction, SearchStore
from iot_pipeline.storage.base import search_all
from iot_pipeline.vocabulary import INVALIDATING, SPATIAL

PAGE = 5000
# A reading another rule invalidated says nothing about the place; one the buddy check
# questioned is judged again (it is the verdict being recomputed).
_DISTRUSTED = sorted(INVALIDATING - {SPATIAL})


def _slots_range(slots: list[int]) -> dict[str, Any]:
    """A filter on the readings of these slots, contiguous slots as one range."""
    runs = contiguous_runs(slots)
    return time_ranges((int(a * BUDDY_SLOT), int(b * BUDDY_SLOT)) for a, b in runs)


def _slot_chunks(slots: list[int]) -> Iterator[list[int]]:
    """The sorted slots in pieces of at most MAX_RANGES_PER_QUERY contiguous runs: a station
    uploading weeks of buffered data touches thousands of slots, and the engine takes at
    most 1024 clauses per query."""
    piece: list[int] = []
    runs = 0
    for slot in slots:
        if not piece or slot != piece[-1] + 1:
            if runs == MAX_RANGES_PER_QUERY:
                yield piece
                piece, runs = [], 0
            runs += 1
        piece.append(slot)
    if piece:
        yield piece


def _slot_means(
    store: SearchStore, prefix: str, metric: str, slots: list[int]
) -> Iterator[tuple[int, SlotValue]]:
    """(slot, the sensor's mean of its trusted readings and where its station stands) for
    one metric. The place comes from the readings themselves (the centroid of one station's
    fixed location): nothing else needs to be visible yet."""
    body: dict[str, Any] = {
        "size": 0,
        "query": {
            "bool": {
                "filter": [{"term": {"metric": metric}}, _slots_range(slots)],
                "must_not": [{"terms": {"flags": _DISTRUSTED}}],
            }
        },
        "aggs": {
            "w": {
                "composite": {
                    "size": PAGE,
                    "sources": [
                        {"t": {"date_histogram": {"field": "event_time", "fixed_interval": "10m"}}},
                        {"sensor_id": {"terms": {"field": "sensor_id"}}},
                        {"station_id": {"terms": {"field": "station_id"}}},
                    ],
                },
                "aggs": {
                    "mean": {"avg": {"field": "value"}},
                    "low": {"min": {"field": "value"}},
                    "high": {"max": {"field": "value"}},
                    "place": {"geo_centroid": {"field": "location"}},
                },
            }
        },
    }
    while True:
        page = store.search(readings_pattern(prefix), body)["aggregations"]["w"]
        for bucket in page["buckets"]:
            mean = bucket["mean"]["value"]
            place = bucket["place"].get("location")
            if mean is not None and place is not None:
                key = bucket["key"]
                slot = int(key["t"]) // int(BUDDY_SLOT * 1000)
                site = SlotValue(
                    key["sensor_id"],
                    key["station_id"],
                    place["lat"],
                    place["lon"],
                    float(mean),
                    float(bucket["low"]["value"]),
                    float(bucket["high"]["value"]),
                )
                yield slot, site
        after = page.get("after_key")
        if not page["buckets"] or after is None:
            return
        body["aggs"]["w"]["composite"]["after"] = after


def _readings(store: SearchStore, prefix: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    body = {
        "_source": ["sensor_id", "district", "metric", "event_time", *VERDICT_FIELDS],
        "query": query,
        "sort": [{"sensor_id": "asc"}, {"event_id": "asc"}],
    }
    return search_all(store, readings_pattern(prefix), body, PAGE)


def touched_slots(kept: list[CleanReading]) -> dict[str, set[int]]:
    """The buddy slots these readings fall into, per metric."""
    touched: dict[str, set[int]] = defaultdict(set)
    for clean in kept:
        touched[clean.reading.metric].add(int(clean.reading.event_time.timestamp() // BUDDY_SLOT))
    return touched


def buddy_updates(
    store: SearchStore, prefix: str, kept: list[CleanReading]
) -> tuple[list[IndexAction], set[Window]]:
    """Spatial flag updates for the slots these readings touched, and the windows they change."""
    return slot_updates(store, prefix, touched_slots(kept))


def slot_updates(
    store: SearchStore, prefix: str, touched: dict[str, set[int]]
) -> tuple[list[IndexAction], set[Window]]:
    """Spatial flag updates for these slots of each metric, and the windows they change."""
    actions: list[IndexAction] = []
    windows: set[Window] = set()
    for metric, slot_set in sorted(touched.items()):
        for slots in _slot_chunks(sorted(slot_set)):
            found, changed = _judge(store, prefix, metric, slots)
            actions += found
            windows |= changed
    return actions, windows


def _judge(
    store: SearchStore, prefix: str, metric: str, slots: list[int]
) -> tuple[list[IndexAction], set[Window]]:
    """The spatial flag updates of one metric's slots (at most MAX_RANGES_PER_QUERY runs)."""
    actions: list[IndexAction] = []
    windows: set[Window] = set()
    by_slot: dict[int, dict[str, SlotValue]] = defaultdict(dict)
    for slot, site in _slot_means(store, prefix, metric, slots):
        by_slot[slot][site.sensor_id] = site
    questioned: set[tuple[int, str]] = set()
    for slot, values in by_slot.items():
        outliers, _ = spatial_outliers(metric, values)
        questioned |= {(slot, sensor_id) for sensor_id in outliers}
    # readings whose verdict changes: flagged now but no longer questioned, or the reverse
    base = [{"term": {"metric": metric}}, _slots_range(slots)]
    flagged = _readings(store, prefix, {"bool": {"filter": [*base, {"term": {"flags": SPATIAL}}]}})
    candidates = flagged
    if questioned:
        sensors = sorted({sensor_id for _, sensor_id in questioned})
        candidates = flagged + _readings(
            store,
            prefix,
            {
                "bool": {
                    "filter": [*base, {"terms": {"sensor_id": sensors}}],
                    "must_not": [{"terms": {"flags": [SPATIAL, *_DISTRUSTED]}}],
                }
            },
        )
    for hit in candidates:
        doc = hit["_source"]
        epoch = _epoch(doc["event_time"])
        wanted = (int(epoch // BUDDY_SLOT), doc["sensor_id"]) in questioned
        flags = list(doc.get("flags") or [])
        if (SPATIAL in flags) == wanted:
            continue
        flags = [f for f in flags if f != SPATIAL] + ([SPATIAL] if wanted else [])
        update = {"doc": rejudged(flags, stored_screened(doc), doc.get("override"))}
        actions.append(IndexAction(hit["_index"], hit["_id"], update, op="update"))
        windows |= windows_of(doc["sensor_id"], doc["district"], doc["metric"], epoch)
    return actions, windows


def _epoch(event_time: str) -> float:
    return datetime.fromisoformat(event_time.replace("Z", "+00:00")).timestamp()
