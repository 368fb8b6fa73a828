"""The sensor registry: one document per sensor, so the API answers "which sensors, how are
they, what did they say last" in O(sensors) instead of aggregating every retained reading.

After each range, a worker upserts one document per sensor of the range with a script run by
the engine. The script only ever moves a sensor forward: its newest reading (and its newest
valid one) is replaced only by a newer one, its first reading only by an older one, its batch
only by a later one. Ranges of any partitions, replays and backfills can therefore write in
any order and any number of times: the registry ends the same (no lock, no read-modify-write
on our side; `retry_on_conflict` lets the engine redo a script that raced another).

The registry points at readings (index and id) rather than copying them: the API fetches
the stored reading, so a verdict changed later (a cross-metric flag, a replay) is what it
serves. Readings more than FUTURE_SLACK ahead of their ingest time (clock-skewed sensors)
never make a sensor "last seen" in the future.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from iot_pipeline.cleaning import CleanReading
from iot_pipeline.contracts.readings import reading_id
from iot_pipeline.indices import readings_index, readings_pattern, sensors_index
from iot_pipeline.schema import format_event_time
from iot_pipeline.storage import IndexAction, SearchStore, index_all, refuse_rejections

log = logging.getLogger(__name__)
FUTURE_SLACK = timedelta(minutes=5)
RETRY_ON_CONFLICT = 5

# Painless, understood the same by OpenSearch and Elasticsearch. `ctx.op = 'none'` leaves the
# document untouched (no new version, no refresh work) when nothing moves forward.
UPSERT_SCRIPT = """
def s = ctx._source;
boolean changed = false;
def p = params.last;
if (s.last == null || p.ms > s.last.ms || (p.ms == s.last.ms && p.id.compareTo(s.last.id) >= 0)) {
  for (def e : params.meta.entrySet()) { s[e.getKey()] = e.getValue(); }
  s.last = p; s.last_seen = params.last_seen; s.last_seen_ms = p.ms; changed = true;
}
def v = params.last_valid;
if (v != null && (s.last_valid == null || v.ms > s.last_valid.ms
    || (v.ms == s.last_valid.ms && v.id.compareTo(s.last_valid.id) >= 0))) {
  s.last_valid = v; changed = true;
}
if (s.first_seen_ms == null || params.first_ms < s.first_seen_ms) {
  s.first_seen = params.first_seen; s.first_seen_ms = params.first_ms; changed = true;
}
if (s.ingest_ms == null || params.ingest_ms > s.ingest_ms) {
  s.batch_id = params.batch_id; s.ingest_time = params.ingest_time;
  s.ingest_ms = params.ingest_ms; changed = true;
}
if (!changed) { ctx.op = 'none'; }
""".strip()


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class _Seen:
    """What one range says about one sensor."""

    last: CleanReading
    first: CleanReading
    last_valid: CleanReading | None = None


def _pointer(doc_id: str, index: str, at: datetime, value: float, valid: bool) -> dict[str, Any]:
    """Where a stored reading is, and what the registry keeps of it."""
    return {"id": doc_id, "index": index, "ms": _ms(at), "value": value, "valid": valid}


def _clean_pointer(prefix: str, clean: CleanReading) -> dict[str, Any]:
    r = clean.reading
    return _pointer(
        reading_id(r.sensor_id, r.event_id),
        readings_index(prefix, r.event_time),
        r.event_time,
        r.value,
        clean.valid,
    )


def _upsert(
    meta: dict[str, Any],
    last: dict[str, Any],
    last_valid: dict[str, Any] | None,
    first_seen: datetime,
    batch_id: str,
    ingest_time: datetime,
) -> dict[str, Any]:
    """An update body that runs the upsert script, creating the document when absent."""
    params = {
        "meta": meta,
        "last": last,
        "last_seen": format_event_time(datetime.fromtimestamp(last["ms"] / 1000, UTC)),
        "last_valid": last_valid,
        "first_seen": format_event_time(first_seen),
        "first_ms": _ms(first_seen),
        "batch_id": batch_id,
        "ingest_time": format_event_time(ingest_time),
        "ingest_ms": _ms(ingest_time),
    }
    return {
        "scripted_upsert": True,
        "upsert": {},
        "script": {"lang": "painless", "source": UPSERT_SCRIPT, "params": params},
    }


def _learned(interval: float | None, resolution: float | None) -> dict[str, float]:
    """What the cleaner has learned of a sensor, once it has (an unknown value leaves what
    the registry knew)."""
    known = {"interval_s": interval, "resolution": resolution}
    return {k: v for k, v in known.items() if v is not None}


def _newer(a: CleanReading, b: CleanReading) -> bool:
    """Whether `a` comes after `b` in the registry's order (event time, then event id)."""
    return (a.reading.event_time, a.reading.event_id) > (b.reading.event_time, b.reading.event_id)


def registry_actions(
    prefix: str, stored: Iterable[CleanReading], batch_id: str, ingest_time: datetime
) -> list[IndexAction]:
    """One scripted upsert per sensor of `stored` (the readings a range indexed)."""
    horizon = ingest_time + FUTURE_SLACK
    seen: dict[str, _Seen] = {}
    for clean in stored:
        r = clean.reading
        if r.event_time > horizon:
            continue
        entry = seen.get(r.sensor_id)
        if entry is None:
            entry = seen[r.sensor_id] = _Seen(last=clean, first=clean)
        else:
            if _newer(clean, entry.last):
                entry.last = clean
            if _newer(entry.first, clean):
                entry.first = clean
        if clean.valid and (entry.last_valid is None or _newer(clean, entry.last_valid)):
            entry.last_valid = clean
    index = sensors_index(prefix)
    actions = []
    for sensor_id, entry in seen.items():
        r = entry.last.reading
        meta: dict[str, Any] = {
            "sensor_id": r.sensor_id,
            "station_id": r.station_id,
            "district": r.district,
            "metric": r.metric,
            "unit": r.unit,
            "location": {"lat": r.lat, "lon": r.lon},
            "firmware": r.firmware,
        }
        meta |= _learned(entry.last.interval, entry.last.resolution)
        valid = None if entry.last_valid is None else _clean_pointer(prefix, entry.last_valid)
        body = _upsert(
            meta,
            _clean_pointer(prefix, entry.last),
            valid,
            entry.first.reading.event_time,
            batch_id,
            ingest_time,
        )
        actions.append(
            IndexAction(index, sensor_id, body, "update", retry_on_conflict=RETRY_ON_CONFLICT)
        )
    return actions


# Rebuilding from the readings (a deployment that has readings from before the registry).
REBUILD_PAGE = 500


def _rebuild_body(after: dict[str, Any] | None, horizon: str) -> dict[str, Any]:
    newest = {"size": 1, "sort": [{"event_time": "desc"}, {"event_id": "desc"}]}
    body: dict[str, Any] = {
        "size": 0,
        "query": {"range": {"event_time": {"lte": horizon}}},
        "aggs": {
            "sensors": {
                "composite": {
                    "size": REBUILD_PAGE,
                    "sources": [{"sensor_id": {"terms": {"field": "sensor_id"}}}],
                },
                "aggs": {
                    "last": {"top_hits": newest},
                    "first": {"top_hits": {**newest, "sort": [{"event_time": "asc"}]}},
                    "valid": {
                        "filter": {"term": {"valid": True}},
                        "aggs": {"last": {"top_hits": newest}},
                    },
                },
            }
        },
    }
    if after is not None:
        body["aggs"]["sensors"]["composite"]["after"] = after
    return body


def _doc_pointer(hit: dict[str, Any]) -> dict[str, Any]:
    doc = hit["_source"]
    at = datetime.fromisoformat(doc["event_time"])
    return _pointer(hit["_id"], hit["_index"], at, doc["value"], doc["valid"])


def _rebuilt(index: str, bucket: dict[str, Any]) -> IndexAction | None:
    lasts = bucket["last"]["hits"]["hits"]
    if not lasts:
        return None
    last = lasts[0]["_source"]
    first = bucket["first"]["hits"]["hits"][0]["_source"]
    valid_hits = bucket["valid"]["last"]["hits"]["hits"]
    meta = {k: last[k] for k in ("sensor_id", "station_id", "district", "metric", "unit")}
    meta |= {"location": last["location"], "firmware": last.get("firmware")}
    meta |= _learned(last.get("interval_s"), last.get("resolution"))
    body = _upsert(
        meta,
        _doc_pointer(lasts[0]),
        _doc_pointer(valid_hits[0]) if valid_hits else None,
        datetime.fromisoformat(first["event_time"]),
        last["batch_id"],
        datetime.fromisoformat(last["ingest_time"]),
    )
    return IndexAction(
        index, last["sensor_id"], body, "update", retry_on_conflict=RETRY_ON_CONFLICT
    )


def rebuild_actions(store: SearchStore, prefix: str, now: datetime) -> Iterator[IndexAction]:
    """Registry upserts computed from the stored readings, a page of sensors at a time."""
    index = sensors_index(prefix)
    horizon = format_event_time(now + FUTURE_SLACK)
    after: dict[str, Any] | None = None
    while True:
        result = store.search(readings_pattern(prefix), _rebuild_body(after, horizon))
        sensors = result.get("aggregations", {}).get("sensors", {})
        for bucket in sensors.get("buckets", []):
            action = _rebuilt(index, bucket)
            if action is not None:
                yield action
        after = sensors.get("after_key")
        if not after or not sensors.get("buckets"):
            return


def rebuild(store: SearchStore, prefix: str, now: datetime) -> int:
    """Upsert the registry from every stored reading; returns the sensors written. Safe at
    any time (the script keeps whichever of the two is newer)."""
    written = 0
    page: list[IndexAction] = []
    for action in rebuild_actions(store, prefix, now):
        page.append(action)
        if len(page) == REBUILD_PAGE:
            written += _write(store, page)
            page = []
    return written + _write(store, page)


def _write(store: SearchStore, actions: list[IndexAction]) -> int:
    report = index_all(store, actions)
    refuse_rejections(report, "registry upserts")
    return report.indexed


def ensure(store: SearchStore, prefix: str, now: datetime) -> int | None:
    """Build the registry from the readings when there are readings but no registry yet (a
    deployment upgraded with data); None when there was nothing to do."""
    if store.list_indices(sensors_index(prefix)) or not store.list_indices(
        readings_pattern(prefix)
    ):
        return None
    written = rebuild(store, prefix, now)
    log.info("sensor registry built from the stored readings: %d sensors", written)
    return written
