"""Flags found in hindsight (cleaning.Hindsight) put on the stored readings they reach.

The cleaner judges a run of identical values stuck only once it has lasted (or repeated)
long enough, and a sparse sensor's spike only when the next reading came back: the readings
judged then may be stored already, by this range or an earlier one. After the range's
readings are searchable, one search finds the stored readings each hindsight reaches (same
sensor and value, event time in its span) that lack the flag; partial updates add it, and
the windows they fall into are recomputed with the range's own. Repeating a range finds
them flagged already and changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from iot_pipeline.aggregation.windows import Window, windows_of
from iot_pipeline.cleaning import CleanReading, Hindsight
from iot_pipeline.cleaning.overrides import VERDICT_FIELDS, rejudged, stored_screened
from iot_pipeline.indices import readings_pattern
from iot_pipeline.storage import IndexAction, SearchStore
from iot_pipeline.storage.base import search_all

PAGE = 5000
MAX_CLAUSES = 100  # hindsights per query: each is five clauses, the engine takes 1024


def _reached(sensor_id: str, later: Hindsight) -> dict[str, Any]:
    return {
        "bool": {
            "filter": [
                {"term": {"sensor_id": sensor_id}},
                {"term": {"value": later.value}},
                {
                    "range": {
                        "event_time": {
                            "gte": int(later.start * 1000),
                            "lt": int(later.end * 1000),
                            "format": "epoch_millis",
                        }
                    }
                },
            ],
            "must_not": [{"term": {"flags": later.flag}}],
        }
    }


def hindsight_updates(
    store: SearchStore,
    prefix: str,
    kept: list[CleanReading],
    extra: Sequence[tuple[str, Hindsight]] = (),
) -> tuple[list[IndexAction], set[Window]]:
    """Updates adding each hindsight flag (the readings' own, and `extra` ones by sensor) to
    the stored readings it reaches, and the windows they change."""
    reaching = [(c.reading.sensor_id, h) for c in kept for h in c.hindsight] + list(extra)
    if not reaching:
        return [], set()
    hits: dict[tuple[str, str], dict[str, Any]] = {}  # a reading reached from two pieces once
    # a network-wide freeze judges thousands of runs at once: the engine takes at most 1024
    # clauses per query
    for start in range(0, len(reaching), MAX_CLAUSES):
        body: dict[str, Any] = {
            "_source": ["sensor_id", "district", "metric", "event_time", *VERDICT_FIELDS],
            "query": {
                "bool": {
                    "should": [_reached(s, h) for s, h in reaching[start : start + MAX_CLAUSES]]
                }
            },
            "sort": [{"sensor_id": "asc"}, {"event_id": "asc"}],
        }
        for hit in search_all(store, readings_pattern(prefix), body, PAGE):
            hits[hit["_index"], hit["_id"]] = hit
    by_sensor: dict[str, list[Hindsight]] = defaultdict(list)
    for sensor_id, later in reaching:
        by_sensor[sensor_id].append(later)
    actions: list[IndexAction] = []
    windows: set[Window] = set()
    for hit in hits.values():
        doc = hit["_source"]
        epoch = datetime.fromisoformat(doc["event_time"]).timestamp()
        had = doc.get("flags", [])
        added = [
            h.flag
            for h in by_sensor[doc["sensor_id"]]
            if h.start <= epoch < h.end and h.flag not in had
        ]
        if not added:
            continue
        flags = [*had, *dict.fromkeys(added)]
        # an operator's override stays (cleaning.overrides)
        update = {"doc": rejudged(flags, stored_screened(doc), doc.get("override"))}
        actions.append(IndexAction(hit["_index"], hit["_id"], update, op="update"))
        windows |= windows_of(doc["sensor_id"], doc["district"], doc["metric"], epoch)
    return actions, windows
