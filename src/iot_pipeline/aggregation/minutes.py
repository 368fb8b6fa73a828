"""The 1-minute windows' statistics, computed by the engine from the stored readings, or
from a range's own readings when they are the whole window (`from_readings`).

A query names the touched minutes themselves (per group of keys, contiguous minutes as one
range), never the span between a batch's oldest and newest reading, so its cost follows the
number of touched windows, whatever the batch's time span.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from iot_pipeline.aggregation.stats import Moments
from iot_pipeline.aggregation.windows import Window
from iot_pipeline.cleaning import CleanReading
from iot_pipeline.errors import StoreError
from iot_pipeline.indices import readings_index
from iot_pipeline.storage import SearchStore

_KEY_FIELD = {"sensor": "sensor_id", "district": "district"}
COMPOSITE_PAGE = 5000
# The engine refuses a query of more than 1,024 clauses, counted after rewriting: a time
# range over stored readings counts three times on the index-sorted readings (measured on
# OpenSearch 2.19: at most 341 such ranges in one query; one with nothing to match counts
# once), a key filter once. A query's clauses are kept within CLAUSE_BUDGET (the rest is left
# for the fixed part of the query), and a query refused all the same (another engine's
# count) is split in halves until it passes.
RANGE_CLAUSES = 3
CLAUSE_BUDGET = 900
MAX_RANGES_PER_QUERY = CLAUSE_BUDGET // RANGE_CLAUSES - 1


# --- 1-minute windows, from the readings -------------------------------------------------
#
# Two composite aggregations per chunk of touched minutes, over the readings of the touched
# sensor-minutes and district-minutes together: one per (district, metric, minute, sensor,
# valid) with the value's statistics, from which both scopes' windows are merged here (a
# district window also learns its reporting sensors), and one per flag over the few flagged
# readings, for the quality counts. Plain metric sub-aggregations keep the engine's work per
# bucket small.

_STATS = {
    "s": {"extended_stats": {"field": "value"}},
    # the sensor's sampling interval as its readings carry it (completeness)
    "i": {"max": {"field": "interval_s"}},
}


@dataclass
class MinuteStats:
    """What one 1-minute window collects from the buckets."""

    parts: list[Moments]
    readings: int = 0
    invalid: int = 0
    sensors: set[str] | None = None
    quality: Counter[str] | None = None
    qc: Counter[str] | None = None
    # each reporting sensor's sampling interval, when its readings say (seconds)
    intervals: dict[str, float] | None = None


def collect_minutes(
    store: SearchStore, prefix: str, windows: list[Window]
) -> dict[Window, MinuteStats]:
    """What the stored readings say of each of these 1-minute windows (windows with no
    reading are left out)."""
    days = sorted({readings_index(prefix, datetime.fromtimestamp(w.start, UTC)) for w in windows})
    indices = ",".join(f"{day}*" for day in days)  # a day deleted meanwhile is no error
    collected: dict[Window, MinuteStats] = {}
    metrics = sorted({w.metric for w in windows})
    pending = deque(_query_chunks(windows))
    while pending:
        chunk = pending.popleft()
        try:  # every page of both queries before any is counted: a refusal counts nothing
            values = list(_buckets(store, indices, _minute_query(metrics, chunk)))
            flagged = list(_buckets(store, indices, _minute_query(metrics, chunk, flags=True)))
        except StoreError as exc:
            if not too_many_clauses(exc) or not _splittable(chunk):
                raise
            pending.extendleft(reversed(_halves(chunk)))
            continue
        # only this chunk's windows: a reading matched by two chunks is counted once
        mine = _members(chunk, windows)
        for key, bucket in values:
            epoch = int(key["t"]) // 1000
            count = int(bucket["doc_count"])
            valid = key["valid"] in (True, 1, "true")
            for window in (
                mine.get(("sensor", key["sensor_id"], key["metric"], epoch)),
                mine.get(("district", key["district"], key["metric"], epoch)),
            ):
                if window is None:
                    continue
                minute = collected.setdefault(window, MinuteStats([]))
                minute.readings += count
                if key.get("qc") is not None:  # readings stored before the verdict have none
                    minute.qc = minute.qc or Counter()
                    minute.qc[key["qc"]] += count
                if valid:
                    minute.parts.append(Moments.from_engine(bucket["s"]))
                else:
                    minute.invalid += count
                if window.scope == "district":
                    minute.sensors = (minute.sensors or set()) | {key["sensor_id"]}
                interval = (bucket.get("i") or {}).get("value")
                if interval:
                    minute.intervals = minute.intervals or {}
                    sensor = key["sensor_id"]
                    minute.intervals[sensor] = max(minute.intervals.get(sensor, 0.0), interval)
        for key, bucket in flagged:
            epoch = int(key["t"]) // 1000
            for window in (
                mine.get(("sensor", key["sensor_id"], key["metric"], epoch)),
                mine.get(("district", key["district"], key["metric"], epoch)),
            ):
                if window is not None and window in collected:
                    minute = collected[window]
                    minute.quality = minute.quality or Counter()
                    minute.quality[key["flags"]] += int(bucket["doc_count"])
    return collected


def from_readings(readings: Iterable[CleanReading]) -> dict[Window, MinuteStats]:
    """The sensor 1-minute windows of these readings, as `collect_minutes` finds them in a
    store that holds exactly these readings of those windows and nothing else: the same
    counts, verdicts, flags (each distinct flag of a reading once, as the engine's terms
    count a multi-valued field) and intervals (the largest a reading carries)."""
    minutes: dict[tuple[str, str, int], MinuteStats] = {}
    values: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for clean in readings:
        r = clean.reading
        key: tuple[str, str, int] = (
            r.sensor_id,
            r.metric,
            int(r.event_time.timestamp()) // 60 * 60,
        )
        minute = minutes.get(key)
        if minute is None:
            minute = minutes[key] = MinuteStats([], qc=Counter())
        minute.readings += 1
        minute.qc[clean.qc] += 1  # type: ignore[index]
        if clean.valid:
            values[key].append(r.value)
        else:
            minute.invalid += 1
        if clean.flags:
            if minute.quality is None:
                minute.quality = Counter()
            minute.quality.update(set(clean.flags))
        interval = clean.counted_interval
        if interval:
            if minute.intervals is None:
                minute.intervals = {}
            minute.intervals[r.sensor_id] = max(minute.intervals.get(r.sensor_id, 0.0), interval)
    for key, found in values.items():
        minutes[key].parts.append(Moments.of(found))
    return {
        Window("sensor", sensor, metric, "1m", start): minute
        for (sensor, metric, start), minute in minutes.items()
    }


def contiguous_runs(values: Iterable[int], step: int = 1) -> tuple[tuple[int, int], ...]:
    """Values (each covering [value, value + step)) as sorted contiguous [start, end) runs."""
    runs: list[list[int]] = []
    for value in sorted(set(values)):
        if runs and runs[-1][1] == value:
            runs[-1][1] = value + step
        else:
            runs.append([value, value + step])
    return tuple((a, b) for a, b in runs)


def _runs(starts: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Minute starts as contiguous [start, end) runs."""
    return contiguous_runs(starts, 60)


# (scope, keys, time runs): the readings of these keys in these minutes
Clause = tuple[str, list[str], list[tuple[int, int]]]


def clause_cost(clause: Clause) -> int:
    """What a clause counts against the engine's limit, at most (see CLAUSE_BUDGET)."""
    return 1 + RANGE_CLAUSES * len(clause[2])


def _query_chunks(windows: list[Window]) -> Iterator[list[Clause]]:
    """Clauses that cover exactly these windows' minutes, in queries within CLAUSE_BUDGET.
    Keys of a scope sharing the same minutes share one clause (the common case: fresh
    readings of many sensors)."""
    minutes: dict[tuple[str, str], set[int]] = defaultdict(set)
    for window in windows:
        minutes[(window.scope, window.key)].add(window.start)
    keys_by_runs: dict[tuple[str, tuple[tuple[int, int], ...]], list[str]] = defaultdict(list)
    for (scope, key), starts in sorted(minutes.items()):
        keys_by_runs[(scope, _runs(starts))].append(key)
    chunk: list[Clause] = []
    size = 0
    for (scope, runs), keys in keys_by_runs.items():
        for first in range(0, len(runs), MAX_RANGES_PER_QUERY):
            clause = (scope, keys, list(runs[first : first + MAX_RANGES_PER_QUERY]))
            if chunk and size + clause_cost(clause) > CLAUSE_BUDGET:
                yield chunk
                chunk, size = [], 0
            chunk.append(clause)
            size += clause_cost(clause)
    if chunk:
        yield chunk


def too_many_clauses(exc: Exception) -> bool:
    """Whether the engine refused a query for its number of clauses."""
    return "too_many_nested_clauses" in str(exc) or "too_many_clauses" in str(exc)


def _splittable(chunk: list[Clause]) -> bool:
    return len(chunk) > 1 or len(chunk[0][2]) > 1 or len(chunk[0][1]) > 1


def _halves(chunk: list[Clause]) -> list[list[Clause]]:
    """A chunk as two that cover the same readings between them, and none twice: its
    clauses, else its one clause's time ranges, else its keys, split in two."""
    if len(chunk) > 1:
        middle = len(chunk) // 2
        return [chunk[:middle], chunk[middle:]]
    scope, keys, runs = chunk[0]
    if len(runs) > 1:
        middle = len(runs) // 2
        return [[(scope, keys, runs[:middle])], [(scope, keys, runs[middle:])]]
    middle = len(keys) // 2
    return [[(scope, keys[:middle], runs)], [(scope, keys[middle:], runs)]]


def _members(chunk: list[Clause], windows: list[Window]) -> dict[tuple[str, str, str, int], Window]:
    """(scope, key, metric, minute) -> window, for the windows this chunk's clauses cover."""
    covered = {
        (scope, key, minute)
        for scope, keys, runs in chunk
        for key in keys
        for start, end in runs
        for minute in range(start, end, 60)
    }
    return {
        (w.scope, w.key, w.metric, w.start): w
        for w in windows
        if (w.scope, w.key, w.start) in covered
    }


def time_ranges(runs: Iterable[tuple[float, float]]) -> dict[str, Any]:
    """A filter on event times in any of these [start, end) runs (epoch seconds)."""
    ranges = [
        {
            "range": {
                "event_time": {
                    "gte": int(a * 1000),
                    "lt": int(b * 1000),
                    "format": "epoch_millis",
                }
            }
        }
        for a, b in runs
    ]
    return {"bool": {"should": ranges, "minimum_should_match": 1}}


def _minute_query(metrics: list[str], chunk: list[Clause], flags: bool = False) -> dict[str, Any]:
    """A composite aggregation per (district, metric, minute, sensor, valid, qc verdict) with
    the value's statistics, or per (..., flag) over flagged readings, over exactly the chunk's
    minutes."""
    should = [
        {"bool": {"filter": [{"terms": {_KEY_FIELD[scope]: keys}}, time_ranges(runs)]}}
        for scope, keys, runs in chunk
    ]
    minute = {"field": "event_time", "fixed_interval": "1m"}
    sources: list[dict[str, Any]] = [
        {"district": {"terms": {"field": "district"}}},
        {"metric": {"terms": {"field": "metric"}}},
        {"t": {"date_histogram": minute}},
        {"sensor_id": {"terms": {"field": "sensor_id"}}},
    ]
    if flags:
        sources.append({"flags": {"terms": {"field": "flags"}}})
    else:
        sources.append({"valid": {"terms": {"field": "valid"}}})
        sources.append({"qc": {"terms": {"field": "qc", "missing_bucket": True}}})
    composite: dict[str, Any] = {"composite": {"size": COMPOSITE_PAGE, "sources": sources}}
    if not flags:
        composite["aggs"] = _STATS
    query: list[dict[str, Any]] = [
        {"terms": {"metric": metrics}},
        {"bool": {"should": should, "minimum_should_match": 1}},
    ]
    if flags:
        query.append({"exists": {"field": "flags"}})
    return {"size": 0, "query": {"bool": {"filter": query}}, "aggs": {"w": composite}}


def _buckets(
    store: SearchStore, indices: str, body: dict[str, Any]
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(key, bucket) of the composite aggregation `w`, page after page."""
    while True:
        result = store.search(indices, body)
        page = result.get("aggregations", {}).get("w", {"buckets": []})
        for bucket in page["buckets"]:
            yield bucket["key"], bucket
        after = page.get("after_key")
        if not page["buckets"] or after is None:
            return
        body["aggs"]["w"]["composite"]["after"] = after
