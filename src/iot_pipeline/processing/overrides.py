"""Operator overrides in the store: their documents (`<prefix>-qc-overrides`), the active ones
loaded once per range to apply at cleaning time, and their settlement on the readings
already stored, done by a worker task (worker.tasks).

Settling an override (`settle`) brings every stored reading of its sensor in [start, end) to
the verdict the *active* overrides give it (partial updates), recomputes the windows of the
readings that changed (their revision goes up), then marks the override `applied` (or
`removed`, for one being deleted) with the counts. It reads the overrides afresh each time,
so settling is idempotent and the last settlement of a sensor wins whatever the order. A
settlement that stopped half-way is finished by the next one: the status is still
`pending`/`removing`, and a repeated attempt recomputes the windows of every reading of the
range (the changed ones can no longer be told apart).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from iot_pipeline.aggregation import recompute_windows
from iot_pipeline.aggregation.windows import Window, windows_of
from iot_pipeline.cleaning import qc_verdict
from iot_pipeline.cleaning.overrides import Override, covering, override_verdict, verdict_fields
from iot_pipeline.contracts.overrides import generation_key
from iot_pipeline.errors import PermanentStoreError, TransientStoreError
from iot_pipeline.indices import overrides_index, readings_pattern
from iot_pipeline.schema import format_event_time
from iot_pipeline.storage import BulkPolicy, IndexAction, SearchStore, index_all, refuse_rejections
from iot_pipeline.storage.base import Versioned, search_all
from iot_pipeline.vocabulary import (
    ACCEPT,
    OVERRIDE_ACTIVE,
    OVERRIDE_APPLIED,
    OVERRIDE_PENDING,
    OVERRIDE_REMOVED,
    OVERRIDE_REMOVING,
    QC_ACCEPTED,
    QC_BLACKLISTED,
    QC_REJECTED,
    Qc,
)

log = logging.getLogger(__name__)
PAGE = 5000

# Painless, the same on both engines: the verdict fields set, or the override's removed.
SET_VERDICT = """
ctx._source.qc = params.qc; ctx._source.valid = params.valid;
if (params.override == null) { ctx._source.remove('override'); ctx._source.remove('auto_qc'); }
else { ctx._source.override = params.override; ctx._source.auto_qc = params.auto_qc; }
""".strip()


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def override_of(doc: dict[str, Any]) -> Override:
    return Override(
        doc["id"], doc["sensor_id"], _epoch(doc["start"]), _epoch(doc["end"]), doc["action"]
    )


def _anywhere(prefix: str) -> str:
    """The override index as a pattern: before the first override there is no index, and a
    pattern matching nothing is an empty answer, not an error (nor a warning in the logs)."""
    return f"{overrides_index(prefix)}*"


def generation(client: redis.Redis, prefix: str) -> int:
    raw = client.get(generation_key(prefix))
    return int(raw) if raw is not None else 0


def load_active(
    store: SearchStore,
    prefix: str,
    sensor_id: str | None = None,
    sensors: set[str] | None = None,
) -> list[Override]:
    """The overrides in force (pending or applied), of one sensor, of `sensors`, or all: one
    search (a few pages for thousands), nothing when there is no override index yet."""
    where: list[dict[str, Any]] = [{"terms": {"status": sorted(OVERRIDE_ACTIVE)}}]
    if sensor_id is not None:
        where.append({"term": {"sensor_id": sensor_id}})
    if sensors is not None:
        if not sensors:
            return []
        where.append({"terms": {"sensor_id": sorted(sensors)}})
    body = {
        "_source": ["id", "sensor_id", "start", "end", "action"],
        "query": {"bool": {"filter": where}},
        "sort": [{"id": "asc"}],
    }
    hits = search_all(store, _anywhere(prefix), body, PAGE)
    return [override_of(hit["_source"]) for hit in hits]


def sensor_of(store: SearchStore, prefix: str, override_id: str) -> str | None:
    """The sensor an override is about (None when there is no such override)."""
    index = overrides_index(prefix)
    found = store.get_versioned([(index, override_id)]).get((index, override_id))
    return None if found is None else str(found.source["sensor_id"])


def settle_in_flight(
    store: SearchStore,
    prefix: str,
    readings: dict[str, tuple[float, float]],
    sample_interval: float,
    bulk: BulkPolicy | None = None,
) -> tuple[int, int]:
    """An override created or deleted while a range was in flight (cleaned with the overrides
    as they were before): bring the range's readings, now stored and searchable, to the
    verdicts of the overrides in force now. `readings`: per sensor, the span of event times
    [first, last] of the range's readings. Returns (readings changed, windows written)."""
    changed = written = 0
    for sensor_id, (first, last) in sorted(readings.items()):
        moved, windows = reconcile(
            store, prefix, sensor_id, first, last + 0.001, sample_interval, bulk=bulk
        )
        changed += moved
        written += windows
    return changed, written


def unsettled(store: SearchStore, prefix: str) -> list[str]:
    """Ids of the overrides not settled yet (pending, or being removed)."""
    body = {
        "_source": False,
        "query": {"terms": {"status": [OVERRIDE_PENDING, OVERRIDE_REMOVING]}},
        "sort": [{"id": "asc"}],
    }
    return [hit["_id"] for hit in search_all(store, _anywhere(prefix), body, PAGE)]


@dataclass(frozen=True)
class Settled:
    """What settling one override (or one slice of it) did."""

    override_id: str
    status: str  # after settling ("missing": no such override)
    readings_changed: int = 0
    windows_written: int = 0
    more: bool = False  # slices of its range are left: settle it again

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class OverrideRaced(TransientStoreError):
    """The override's document changed while it was settled (a DELETE, another worker)."""


# An override is settled one day of its range at a time, each slice a task of its own that
# records how far it got: a year-long override of a sensor read every second never holds a
# worker for long (nor outlives the task time limit and starts over), and the ranges of the
# ETL go between its slices.
SETTLE_SLICE = 86400.0


def settle(
    store: SearchStore,
    prefix: str,
    override_id: str,
    sample_interval: float,
    bulk: BulkPolicy | None = None,
    now: datetime | None = None,
) -> Settled:
    """Apply a pending override, or revert one being removed, on the stored readings of the
    next slice of its range (SETTLE_SLICE); `more` when slices are left. A settled (or
    unknown) override is left as it is. Safe to repeat."""
    index = overrides_index(prefix)
    found = store.get_versioned([(index, override_id)]).get((index, override_id))
    if found is None:
        return Settled(override_id, "missing")
    doc = found.source
    status = doc["status"]
    if status not in (OVERRIDE_PENDING, OVERRIDE_REMOVING):
        return Settled(override_id, status)
    attempts = int(doc.get("attempts") or 0)
    claimed = _write(store, index, override_id, {**doc, "attempts": attempts + 1}, found)
    if claimed is None:
        raise OverrideRaced(f"override {override_id} changed while being settled; try again")
    start, end = _epoch(doc["start"]), _epoch(doc["end"])
    progress = doc.get("progress") or {}
    if progress.get("status") == status:  # a removal starts over from the range's start
        start = max(start, progress["until_ms"] / 1000)
    until = min(end, start + SETTLE_SLICE)
    changed, written = reconcile(
        store,
        prefix,
        doc["sensor_id"],
        start,
        until,
        sample_interval,
        every_window=attempts > 0,
        bulk=bulk,
    )
    if status == OVERRIDE_PENDING:
        counts = ("readings_changed", "windows_written")
    else:
        counts = ("readings_reverted", "windows_rewritten")
    totals = {
        counts[0]: int(doc.get(counts[0]) or 0) + changed,
        counts[1]: int(doc.get(counts[1]) or 0) + written,
    }
    if until < end:
        step = {
            **claimed.source,
            **totals,
            "attempts": 0,
            "progress": {"status": status, "until_ms": int(until * 1000)},
        }
        if _write(store, index, override_id, step, claimed):
            return Settled(override_id, status, changed, written, more=True)
        return _raced(store, index, override_id, changed, written)
    at = format_event_time(now or datetime.now(UTC))
    stamp = "applied_at" if status == OVERRIDE_PENDING else "removed_at"
    final = OVERRIDE_APPLIED if status == OVERRIDE_PENDING else OVERRIDE_REMOVED
    done = {**claimed.source, **totals, stamp: at, "status": final, "progress": None}
    if _write(store, index, override_id, done, claimed):
        log.info(
            "override %s %s: %d readings changed, %d windows written",
            override_id,
            final,
            totals[counts[0]],
            totals[counts[1]],
        )
        return Settled(override_id, final, totals[counts[0]], totals[counts[1]])
    return _raced(store, index, override_id, changed, written)


def _raced(store: SearchStore, index: str, override_id: str, changed: int, written: int) -> Settled:
    """After a write that lost to another: deleted meanwhile, the removal's own settlement
    (sent by the DELETE) takes it from here; anything else is tried again."""
    latest = store.get_versioned([(index, override_id)]).get((index, override_id))
    now_status = latest.source["status"] if latest is not None else "missing"
    if now_status in (OVERRIDE_REMOVING, "missing"):
        return Settled(override_id, now_status, changed, written)
    raise OverrideRaced(f"override {override_id} changed while being settled; try again")


def _write(
    store: SearchStore, index: str, override_id: str, doc: dict[str, Any], over: Versioned
) -> Versioned | None:
    """Write the override's document over exactly that version; None when it changed since.
    Returns the new version."""
    action = IndexAction(
        index, override_id, doc, if_seq_no=over.seq_no, if_primary_term=over.primary_term
    )
    outcome = store.bulk_index([action], refresh=True)
    if outcome.failures:
        failure = outcome.failures[0]
        if failure.conflict:
            return None
        raise (TransientStoreError if failure.retryable else PermanentStoreError)(
            f"override {override_id} not written: {failure.status} {failure.reason}"
        )
    return store.get_versioned([(index, override_id)]).get((index, override_id))


def stored_auto(doc: dict[str, Any]) -> Qc:
    """The rules' verdict of a stored reading (its `qc` unless an operator's override)."""
    auto: Qc | None = doc.get("auto_qc") or doc.get("qc")
    return auto or qc_verdict(doc.get("flags") or [], screened=False)


def _candidates(
    sensor_id: str, start: float, end: float, active: list[Override], every: bool
) -> dict[str, Any]:
    """The sensor's readings of [start, end) whose verdict may have to change: those with an
    override, and those an active override covers that do not have its verdict yet (every
    reading of the range with `every`)."""
    where = [{"term": {"sensor_id": sensor_id}}, _between(start, end)]
    if every:
        return {"bool": {"filter": where}}
    should: list[dict[str, Any]] = [{"exists": {"field": "override"}}]
    for override in active:
        low, high = max(start, override.start), min(end, override.end)
        if low >= high:
            continue
        done = [QC_ACCEPTED, QC_REJECTED] if override.action == ACCEPT else [QC_BLACKLISTED]
        should.append(
            {
                "bool": {
                    "filter": [_between(low, high)],
                    "must_not": [{"terms": {"qc": done}}],
                }
            }
        )
    return {"bool": {"filter": where, "should": should, "minimum_should_match": 1}}


def _between(start: float, end: float) -> dict[str, Any]:
    return {
        "range": {
            "event_time": {
                "gte": int(start * 1000),
                "lt": int(end * 1000),
                "format": "epoch_millis",
            }
        }
    }


def _pages(
    store: SearchStore, prefix: str, query: dict[str, Any]
) -> Iterator[list[dict[str, Any]]]:
    """The matching readings, a page at a time (search_after on event id: one sensor's)."""
    body: dict[str, Any] = {
        "size": PAGE,
        "_source": [
            "sensor_id",
            "district",
            "metric",
            "event_time",
            "flags",
            "qc",
            "valid",
            "override",
            "auto_qc",
        ],
        "query": query,
        "sort": [{"event_id": "asc"}, {"event_time": "asc"}],
    }
    while True:
        hits = store.search(readings_pattern(prefix), body)["hits"]["hits"]
        if hits:
            yield hits
        if len(hits) < PAGE:
            return
        body["search_after"] = hits[-1]["sort"]


def reconcile(
    store: SearchStore,
    prefix: str,
    sensor_id: str,
    start: float,
    end: float,
    sample_interval: float,
    every_window: bool = False,
    bulk: BulkPolicy | None = None,
) -> tuple[int, int]:
    """Bring the sensor's stored readings of [start, end) to the verdicts its active overrides
    give, and recompute the windows of those that changed (of all of them with
    `every_window`); returns (readings changed, windows written)."""
    bulk = bulk or BulkPolicy()
    active = load_active(store, prefix, sensor_id)
    changed = 0
    windows: set[Window] = set()
    touched: set[str] = set()  # indices of the changed readings
    query = _candidates(sensor_id, start, end, active, every_window)
    for hits in _pages(store, prefix, query):
        actions = []
        for hit in hits:
            doc = hit["_source"]
            epoch = _epoch(doc["event_time"])
            auto = stored_auto(doc)
            wanted = verdict_fields(auto, override_verdict(auto, covering(active, epoch)))
            moved = any(doc.get(field) != value for field, value in wanted.items())
            if moved:
                script = {"lang": "painless", "source": SET_VERDICT, "params": wanted}
                actions.append(IndexAction(hit["_index"], hit["_id"], {"script": script}, "update"))
                touched.add(hit["_index"])
            if moved or every_window:
                windows |= windows_of(doc["sensor_id"], doc["district"], doc["metric"], epoch)
        if actions:
            refuse_rejections(index_all(store, actions, bulk), "override verdict updates")
            changed += len(actions)
    if not windows:
        return changed, 0
    if touched:
        store.refresh(",".join(sorted(touched)))
    return changed, recompute_windows(store, prefix, windows, sample_interval, bulk).written
