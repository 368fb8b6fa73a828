"""Benchmark: freshness under the scheduled DAG. Seconds from a reading's production (its
event time: the live simulator produces readings as they are measured) to the moment it is
searchable, p50 and p95, while `iot_sensor_etl` runs at its default interval on the native
stack (`make up`: simulator, scheduler and worker running). The baseline is the schedule
interval itself: the goal is p95 within twice the interval.

Method: poll the reading indices every second; a batch id seen for the first time at poll time
t makes each of its valid readings' freshness t - event_time (1-second histogram buckets).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.model import StackPaths
from iot_pipeline.stack.supervisor import Supervisor
from iot_pipeline.storage import make_store

INTERVAL = 60.0


def _new_batches(
    store: Any, settings: StackSettings, since_ms: int, until_ms: int, seen: set[str]
) -> dict[str, Any]:
    body = {
        "size": 0,
        "query": {
            "bool": {
                "filter": [
                    {"term": {"valid": True}},
                    {
                        "range": {
                            "event_time": {
                                "gte": since_ms,
                                "lt": until_ms,
                                "format": "epoch_millis",
                            }
                        }
                    },
                ],
                "must_not": [{"terms": {"batch_id": sorted(seen)}}] if seen else [],
            }
        },
        "aggs": {
            "batches": {
                "terms": {"field": "batch_id", "size": 100},
                "aggs": {
                    "t": {
                        "histogram": {"field": "event_time", "interval": 1000, "min_doc_count": 1}
                    }
                },
            }
        },
    }
    result = store.search(f"{settings.search_index_prefix}-readings-*", body)
    return {b["key"]: b["t"]["buckets"] for b in result["aggregations"]["batches"]["buckets"]}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--minutes", type=float, default=5.0, help="readings produced in the first N-2 minutes"
    )
    args = parser.parse_args()
    settings = StackSettings()
    supervisor = Supervisor(StackPaths.from_settings(settings))
    states = {n: supervisor.state(n) for n in ("airflow-scheduler", "generator", "worker")}
    if any(state != "RUNNING" for state in states.values()):
        print(f"freshness: needs the full stack (make up) running, got {states}", file=sys.stderr)
        return 1
    if settings.etl_schedule != "* * * * *":
        print(f"freshness: measured for the default schedule, not {settings.etl_schedule!r}")
        return 1
    store = make_store(settings)
    start_ms = int(time.time() * 1000)
    # Readings produced in the first minutes - 2, polled until the end: none is cut off.
    until_ms = start_ms + int((args.minutes - 2) * 60_000)
    seen: set[str] = set(_new_batches(store, settings, start_ms - 600_000, until_ms, set()))
    ages: list[float] = []
    weights = 0
    deadline = time.monotonic() + args.minutes * 60
    print(
        f"freshness: readings produced in the next {args.minutes - 2:.0f} min, "
        f"polled for {args.minutes:.0f} min"
    )
    while time.monotonic() < deadline:
        polled = time.time()
        for batch, buckets in _new_batches(store, settings, start_ms, until_ms, seen).items():
            seen.add(batch)
            count = 0
            for bucket in buckets:
                age = polled - bucket["key"] / 1000 - 0.5
                ages += [age] * int(bucket["doc_count"])
                count += int(bucket["doc_count"])
            weights += count
            print(f"  {batch}: {count} readings, newest {polled - buckets[-1]['key'] / 1000:.1f}s")
        time.sleep(max(0.0, 1.0 - (time.time() - polled)))
    store.close()
    if not ages:
        print("freshness: no batch completed while sampling", file=sys.stderr)
        return 1
    p50, p95 = statistics.median(ages), _percentile(ages, 0.95)
    print()
    print(f"{'what':<44} {'seconds':>8} {'x interval':>11}")
    print(f"{'schedule interval (baseline)':<44} {INTERVAL:>8.1f} {1.0:>11.2f}")
    label = f"freshness p50 ({weights} readings)"
    print(f"{label:<44} {p50:>8.1f} {p50 / INTERVAL:>11.2f}")
    print(f"{'freshness p95':<44} {p95:>8.1f} {p95 / INTERVAL:>11.2f}")
    print(f"{'freshness max':<44} {max(ages):>8.1f} {max(ages) / INTERVAL:>11.2f}")
    print("goal: p95 within 2 x interval; bound: interval + scheduling delay + run duration")
    return 0


if __name__ == "__main__":
    sys.exit(main())
