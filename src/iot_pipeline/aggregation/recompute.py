"""Bring the windows a range touched up to date: exact, bounded, and without a global lock.

1-minute windows are computed by the engine from the stored readings (`minutes`: the
queries name the touched minutes themselves, so their cost follows the number of touched
windows, not a batch's time span), except a new window whose readings the caller holds in
full (`known`: a range's sensor minutes that no stored reading, no earlier writer and no rule
has touched), which is computed from those readings without asking the engine. Each
1-hour window is then merged from its sixty 1-minute documents and each 1-day window from
its twenty-four 1-hour documents (`stats.merge`), read by id in real time: no coarse window
rescans readings.

Concurrency is optimistic and per window. A writer reads a window's version *before* reading
what the window is computed from, and writes only over that version (`if_seq_no`, or
`create` for a new window). A writer that loses the race recomputes the window from fresh
inputs. So a window's revision goes up by exactly one per change, and a result computed from
stale inputs never overwrites a newer one: whoever wrote in between read its inputs later.
Recomputing a window whose inputs did not change writes nothing.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any

from iot_pipeline import __version__
from iot_pipeline.aggregation.minutes import MinuteStats, collect_minutes
from iot_pipeline.aggregation.stats import Moments, close, merge
from iot_pipeline.aggregation.windows import (
    PARENT,
    Window,
    aggregate_id,
)
from iot_pipeline.errors import PermanentStoreError, TransientStoreError
from iot_pipeline.indices import aggregates_index, sensor_metadata_index, sensors_index
from iot_pipeline.schema import METRICS
from iot_pipeline.storage import (
    BulkPolicy,
    IndexAction,
    SearchStore,
    index_all,
)
from iot_pipeline.storage.base import Versioned
from iot_pipeline.vocabulary import RESOLUTIONS

MGET_CHUNK = 5000
MAX_ATTEMPTS = 20

Ref = tuple[str, str]  # (index, id)
# (windows, their stored versions) -> their recomputed documents
Compute = Callable[[list[Window], dict[Window, Versioned]], dict[Window, dict[str, Any]]]


@dataclass
class RecomputeReport:
    """Windows written (changed), optimistic-concurrency races lost and redone, and 1-minute
    windows computed from the caller's readings instead of the engine's."""

    written: int = 0
    conflicts: int = 0
    from_memory: int = 0


@lru_cache(maxsize=65536)  # two per window written
def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class _Context:
    store: SearchStore
    prefix: str
    sample_interval: float
    bulk: BulkPolicy

    def ref(self, window: Window) -> Ref:
        return aggregates_index(self.prefix, window.resolution, window.start), aggregate_id(window)

    def versions(self, refs: list[Ref]) -> dict[Ref, Versioned]:
        found: dict[Ref, Versioned] = {}
        for start in range(0, len(refs), MGET_CHUNK):
            found.update(self.store.get_versioned(refs[start : start + MGET_CHUNK]))
        return found


def recompute_windows(
    store: SearchStore,
    prefix: str,
    windows: Iterable[Window],
    sample_interval: float,
    bulk: BulkPolicy | None = None,
    known: Mapping[Window, MinuteStats] | None = None,
) -> RecomputeReport:
    """Recompute these 1-minute windows from the readings (refreshed), then their 1-hour and
    1-day parents from the children; write what changed, one revision up.

    `known`: 1-minute windows whose every reading the caller holds, as statistics of those
    readings. They are used only for a window that has no document yet; a window found
    stored, or created meanwhile by another writer (its `create` answers 409 and the window
    is computed again), is computed from the store."""
    context = _Context(store, prefix, sample_interval, bulk or BulkPolicy())
    report = RecomputeReport()
    level = sorted({w for w in windows if w.resolution == "1m"})
    compute: Compute = partial(_minute_documents, context, known=known or {}, report=report)
    while level:
        _settle(context, level, compute, report)
        if level[0].resolution not in PARENT:
            break
        # Parents are merged again even when no child changed: a writer that stopped
        # between a child and its parent leaves the parent to the retry of its range (a
        # range that did not finish is not committed), which touches that child again.
        compute = partial(_rolled_up_documents, context, touched=set(level))
        level = sorted({w.parent() for w in level})
    return report


def _settle(
    context: _Context, windows: list[Window], compute: Compute, report: RecomputeReport
) -> None:
    """Write every window that changed, over the version read before its inputs."""
    pending = windows
    for attempt in range(MAX_ATTEMPTS):
        refs = {w: context.ref(w) for w in pending}
        found = context.versions(list(refs.values()))  # versions first, then the inputs
        stored = {w: found[ref] for w, ref in refs.items() if ref in found}
        fresh = compute(pending, stored)
        actions = []
        for window, doc in fresh.items():
            previous = stored.get(window)
            if previous is not None and unchanged(previous.source, doc):
                continue
            index, doc_id = refs[window]
            if previous is None:
                actions.append(IndexAction(index, doc_id, {**doc, "revision": 1}, op="create"))
            else:
                revision = int(previous.source.get("revision", 0)) + 1
                actions.append(
                    IndexAction(
                        index,
                        doc_id,
                        {**doc, "revision": revision},
                        if_seq_no=previous.seq_no,
                        if_primary_term=previous.primary_term,
                    )
                )
        outcome = index_all(context.store, actions, context.bulk)
        report.written += outcome.indexed
        lost = [f for f in outcome.rejected if f.conflict]
        refused = [f for f in outcome.rejected if not f.conflict]
        if refused:
            first = refused[0]
            raise PermanentStoreError(
                f"{len(refused)} aggregate updates refused, first {first.action.id}: "
                f"{first.status} {first.reason}"
            )
        if not lost:
            return
        report.conflicts += len(lost)
        by_ref = {ref: window for window, ref in refs.items()}
        pending = sorted(by_ref[(f.action.index, f.action.id)] for f in lost)
        time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # noqa: S311 (jitter, not secrecy)
    raise TransientStoreError(
        f"{len(pending)} aggregate windows still contended after {MAX_ATTEMPTS} attempts, "
        f"first {aggregate_id(pending[0])}"
    )


_EXACT = (
    "count",
    "min",
    "max",
    "readings",
    "invalid",
    "quality",
    "qc",
    "sensors",
    "sensor_ids",
    "intervals",
    "parts",
)
_CLOSE = ("sum", "mean", "std", "m2", "expected", "completeness")


def unchanged(previous: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    """Whether a recomputed window equals the stored one. Float statistics are compared up to
    summation-order noise: the engine adds in segment order, and the last bits of a double
    must not make a replay look like a change."""
    if any(previous.get(k) != doc.get(k) for k in _EXACT):
        return False
    return all(k in previous and close(previous.get(k), doc.get(k)) for k in _CLOSE if k in doc)


def document(
    window: Window,
    moments: Moments,
    readings: int,
    invalid: int,
    quality: Mapping[str, int],
    sensor_ids: list[str],
    sample_interval: float,
    parts: list[int] | None = None,
    qc: Mapping[str, int] | None = None,
    intervals: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """An aggregate document (without its revision); `parts`: of a merged window, the starts
    of the children it was merged from. `intervals`: the reporting sensors' own sampling
    intervals, where known; `sample_interval` stands in for the others. Completeness is the
    valid readings over those the sensors' intervals make expected in the window."""
    known = intervals or {}
    each = [known.get(sensor) or sample_interval for sensor in sensor_ids] or [sample_interval]
    expected = sum(RESOLUTIONS[window.resolution] / interval for interval in each)
    count = moments.count
    return {
        "scope": window.scope,
        "key": window.key,
        "sensor_id": window.key if window.scope == "sensor" else None,
        "district": window.key if window.scope == "district" else None,
        "metric": window.metric,
        "unit": METRICS[window.metric].unit,
        "resolution": window.resolution,
        "window_start": _iso(window.start),
        "window_end": _iso(window.end),
        "count": count,
        "min": moments.min,
        "max": moments.max,
        "mean": moments.mean,
        "sum": moments.sum,
        "std": moments.std,
        "m2": moments.m2,
        "sensors": len(sensor_ids),
        "sensor_ids": sensor_ids if window.scope == "district" else [],
        # aligned with the reporting sensors (sensor_ids, or the window's own sensor)
        "intervals": [known.get(sensor) for sensor in sensor_ids],
        "expected": expected,
        "completeness": round(min(1.0, count / expected), 6) if expected else None,
        "readings": readings,
        "invalid": invalid,
        "quality": dict(sorted(quality.items())),
        "qc": dict(sorted((qc or {}).items())),
        **({"parts": parts} if parts is not None else {}),
        "pipeline_version": __version__,
    }


def _minute_documents(
    context: _Context,
    windows: list[Window],
    stored: dict[Window, Versioned],
    known: Mapping[Window, MinuteStats],
    report: RecomputeReport,
) -> dict[Window, dict[str, Any]]:
    new = {w: known[w] for w in windows if w in known and w not in stored}
    report.from_memory += len(new)
    rest = [w for w in windows if w not in new]
    minutes = collect_minutes(context.store, context.prefix, rest) if rest else {}
    minutes.update(new)
    reporting = {
        window: sorted(minute.sensors or ()) if window.scope == "district" else [window.key]
        for window, minute in minutes.items()
    }
    unknown = {
        sensor
        for window, minute in minutes.items()
        for sensor in reporting[window]
        if sensor not in (minute.intervals or {})
    }
    learned = _registry_intervals(context, unknown)
    return {
        window: document(
            window,
            merge(minute.parts),
            minute.readings,
            minute.invalid,
            minute.quality or {},
            reporting[window],
            context.sample_interval,
            qc=minute.qc or {},
            intervals={s: learned[s] for s in reporting[window] if s in learned}
            | (minute.intervals or {}),
        )
        for window, minute in minutes.items()
    }


def _registry_intervals(context: _Context, sensors: set[str]) -> dict[str, float]:
    """The intervals of sensors whose readings in a window do not say theirs (a sensor's
    first readings, cleaned before it was known): the one an operator declared, else the one
    the sensor registry has learned. A range writes the registry before its windows, so it
    knows what the range itself taught."""
    if not sensors:
        return {}
    wanted = sorted(sensors)
    declared = _intervals_in(context, sensor_metadata_index(context.prefix), wanted)
    rest = [s for s in wanted if s not in declared]
    return _intervals_in(context, sensors_index(context.prefix), rest) | declared


def _intervals_in(context: _Context, index: str, sensors: list[str]) -> dict[str, float]:
    """The `interval_s` of these sensors' documents in `index` (one multi-get)."""
    docs = context.store.get_many(index, sensors) if sensors else {}
    return {s: float(d["interval_s"]) for s, d in docs.items() if d.get("interval_s")}


# --- coarser windows, merged from their children -----------------------------------------


def _rolled_up_documents(
    context: _Context,
    parents: list[Window],
    stored: dict[Window, Versioned],
    touched: set[Window],
) -> dict[Window, dict[str, Any]]:
    """Each parent merged from its children. Only children that can exist are read: those the
    stored parent was merged from (`parts`) and those touched now. A child created by another
    writer is in the parent that writer wrote after it, or that writer's version check fails
    and it merges again."""
    children: dict[Window, list[Window]] = {}
    for parent in parents:
        known = stored[parent].source.get("parts") if parent in stored else None
        if isinstance(known, list):
            starts = set(known)
            children[parent] = [c for c in parent.children() if c.start in starts or c in touched]
        else:
            children[parent] = parent.children()
    refs = {child: context.ref(child) for group in children.values() for child in group}
    found = context.versions(list(refs.values()))
    docs: dict[Window, dict[str, Any]] = {}
    for parent, group in children.items():
        present = [(child, found[refs[child]].source) for child in group if refs[child] in found]
        if not present:
            continue
        parts = [doc for _, doc in present]
        quality: Counter[str] = Counter()
        qc: Counter[str] = Counter()
        sensor_ids: set[str] = set()
        intervals: dict[str, float] = {}
        for part in parts:  # children in time order: a sensor's newest interval wins
            quality.update(part.get("quality") or {})
            qc.update(part.get("qc") or {})
            sensor_ids.update(part.get("sensor_ids") or [])
            intervals.update(_intervals(part, parent))
        docs[parent] = document(
            parent,
            merge(Moments.from_document(p) for p in parts),
            sum(int(p["readings"]) for p in parts),
            sum(int(p["invalid"]) for p in parts),
            quality,
            sorted(sensor_ids) if parent.scope == "district" else [parent.key],
            context.sample_interval,
            parts=[child.start for child, _ in present],
            qc=qc,
            intervals=intervals,
        )
    return docs


def _intervals(part: Mapping[str, Any], parent: Window) -> dict[str, float]:
    """A stored child's known sensor intervals (aligned with its sensor_ids, or its own
    sensor's); none from documents written before windows kept them."""
    sensors = part.get("sensor_ids") or [] if parent.scope == "district" else [parent.key]
    return {s: i for s, i in zip(sensors, part.get("intervals") or [], strict=False) if i}
