"""Recompute touched windows from the stored readings and write them under their ids.

Statistics come from the engine over every valid reading stored in the window, so the result
does not depend on batch boundaries, redeliveries or arrival order. A window is rewritten
only when its statistics changed, and then its revision goes up by one; the caller holds a
lock so that this read-modify-write is not interleaved with another.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from iot_pipeline import __version__
from iot_pipeline.aggregation.windows import RESOLUTIONS, Window, aggregate_id
from iot_pipeline.schema import METRICS
from iot_pipeline.storage import IndexAction, SearchStore

_KEY_FIELD = {"sensor": "sensor_id", "district": "district"}


def aggregates_index(prefix: str, resolution: str) -> str:
    return f"{prefix}-agg-{resolution}"


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _query(scope: str, resolution: str, windows: list[Window], after: Any) -> dict[str, Any]:
    composite: dict[str, Any] = {
        "size": 1000,
        "sources": [
            {"key": {"terms": {"field": _KEY_FIELD[scope]}}},
            {"metric": {"terms": {"field": "metric"}}},
            {"t": {"date_histogram": {"field": "event_time", "fixed_interval": resolution}}},
        ],
    }
    if after is not None:
        composite["after"] = after
    return {
        "size": 0,
        "query": {
            "bool": {
                "filter": [
                    {"terms": {_KEY_FIELD[scope]: sorted({w.key for w in windows})}},
                    {"terms": {"metric": sorted({w.metric for w in windows})}},
                    {
                        "range": {
                            "event_time": {
                                "gte": _iso(min(w.start for w in windows)),
                                "lt": _iso(max(w.end for w in windows)),
                            }
                        }
                    },
                ]
            }
        },
        "aggs": {
            "w": {
                "composite": composite,
                "aggs": {
                    "valid": {
                        "filter": {"term": {"valid": True}},
                        "aggs": {"s": {"extended_stats": {"field": "value"}}},
                    },
                    "flags": {"terms": {"field": "flags", "size": 50}},
                    "sensors": {"cardinality": {"field": "sensor_id"}},
                },
            }
        },
    }


def _document(window: Window, bucket: dict[str, Any], sample_interval: float) -> dict[str, Any]:
    stats = bucket["valid"]["s"]
    count = int(stats["count"])
    sensors = int(bucket["sensors"]["value"])
    expected = RESOLUTIONS[window.resolution] / sample_interval * max(sensors, 1)
    readings = int(bucket["doc_count"])
    doc: dict[str, Any] = {
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
        "min": stats["min"] if count else None,
        "max": stats["max"] if count else None,
        # Rounded far below the sensors' resolution: the engine sums in segment order, and
        # the last bits of a double must not make a replay look like a change.
        "mean": round(stats["avg"], 9) if count else None,
        "sum": round(stats["sum"], 6) if count else 0.0,
        "std": round(stats["std_deviation"], 9) if count else None,
        "sensors": sensors,
        "expected": expected,
        "completeness": round(min(1.0, count / expected), 6) if expected else None,
        "readings": readings,
        "invalid": readings - int(bucket["valid"]["doc_count"]),
        "quality": {b["key"]: b["doc_count"] for b in bucket["flags"]["buckets"]},
        "pipeline_version": __version__,
    }
    digest_source = {k: v for k, v in doc.items() if k != "pipeline_version"}
    doc["digest"] = hashlib.sha1(
        json.dumps(digest_source, sort_keys=True).encode(), usedforsecurity=False
    ).hexdigest()
    return doc


def recompute_windows(
    store: SearchStore,
    prefix: str,
    windows: set[Window],
    sample_interval: float,
) -> list[IndexAction]:
    """The update actions that bring every touched window up to date (readings refreshed)."""
    groups: dict[tuple[str, str], list[Window]] = defaultdict(list)
    for window in windows:
        groups[(window.scope, window.resolution)].append(window)
    actions: list[IndexAction] = []
    readings = f"{prefix}-readings-*"
    for (scope, resolution), group in sorted(groups.items()):
        wanted = {(w.key, w.metric, w.start): w for w in group}
        fresh: dict[str, dict[str, Any]] = {}
        after = None
        while True:
            body = _query(scope, resolution, group, after)
            result = store.search(readings, body)["aggregations"]["w"]
            for bucket in result["buckets"]:
                key = bucket["key"]
                target = wanted.get((key["key"], key["metric"], int(key["t"]) // 1000))
                if target is not None:
                    fresh[aggregate_id(target)] = _document(target, bucket, sample_interval)
            after = result.get("after_key")
            if not result["buckets"] or after is None:
                break
        # Rewrite only what changed, one revision up (callers serialise recomputations).
        index = aggregates_index(prefix, resolution)
        stored = store.get_many(index, sorted(fresh))
        for doc_id, doc in fresh.items():
            previous = stored.get(doc_id)
            if previous is not None and previous.get("digest") == doc["digest"]:
                continue
            revision = int(previous["revision"]) + 1 if previous else 1
            actions.append(IndexAction(index, doc_id, {**doc, "revision": revision}))
    return actions
