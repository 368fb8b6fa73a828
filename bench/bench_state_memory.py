"""Benchmark: Redis memory of the cleaner's state for a city of N sensors (default 5,000),
against Redis's `maxmemory` (the baseline: the state must fit with room for the broker, the
results and the run state).

Method: one sensor's state is learned by cleaning 600 simulated readings (so its history, its
duplicate memory and its run are full); each of the N sensors gets a copy with its own event
ids. The states are checkpointed into the real Redis with the pipeline's own functions, under a
prefix of their own, across 6 partitions: the live key of each partition (the checkpoints
before and after its last range) and a full ring of older checkpoints (`RING_SIZE` per
partition, as a backlog leaves it). `MEMORY USAGE` of each key is summed per kind; the keys
are deleted afterwards.

    python bench/bench_state_memory.py [--sensors 5000]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import sys
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import redis

from iot_pipeline.cleaning import RawRecord, SensorState, clean_batch
from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.processing import state_store
from iot_pipeline.settings import StackSettings

PARTITIONS = 6
UNITS = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}


def _learned(readings: int = 600) -> SensorState:
    """One sensor's state after `readings` simulated minutes of a temperature sensor."""
    start = datetime.now(UTC) - timedelta(minutes=readings)
    records = []
    for n in range(readings):
        doc = {
            "schema_version": 1,
            "event_id": f"{uuid.uuid4().hex[:8]}-a8-{n:x}",
            "sensor_id": "casa-anfa-01-temperature",
            "station_id": "casa-anfa-01",
            "district": "Anfa",
            "metric": "temperature",
            "value": round(20 + (n % 37) / 10, 2),
            "unit": "°C",
            "event_time": (start + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "seq": n,
            "lat": 33.59,
            "lon": -7.65,
            "battery_pct": 80.0,
            "firmware": "3.0.2",
        }
        records.append(RawRecord(json.dumps(doc).encode(), "t", 0, n))
    states: dict[str, SensorState] = {}
    clean_batch(records, states, datetime.now(UTC))
    return states["casa-anfa-01-temperature"]


def _states(sensors: int) -> list[dict[str, SensorState]]:
    """N sensors, each with its own event ids, times and values (so that compression sees
    what a real network gives it), spread over the partitions."""
    model = _learned()
    rng = random.Random(5)  # noqa: S311 (test data, not secrets)
    parts: list[dict[str, SensorState]] = [{} for _ in range(PARTITIONS)]
    for k in range(sensors):
        state = copy.deepcopy(model)
        shift, level = rng.uniform(-30, 30), rng.uniform(-5, 5)
        state.history = [
            (t + shift + rng.uniform(-0.5, 0.5), round(v + level + rng.gauss(0, 0.3), 2))
            for t, v in state.history
        ]
        state.watermark += shift
        state.touched += shift
        state.step = rng.uniform(0.01, 0.5)
        state.seen = []
        for n in range(len(model.seen)):
            state.remember(f"{uuid.uuid4().hex[:8]}-{k:x}-{n:x}")
        parts[k % PARTITIONS][f"casa-s{k}-temperature"] = state
    return parts


def _maxmemory(client: redis.Redis, settings: StackSettings) -> int:
    configured = int(client.config_get("maxmemory").get("maxmemory") or 0)
    if configured:
        return configured
    number, unit = re.fullmatch(r"(\d+)(kb|mb|gb)", settings.redis_maxmemory).groups()  # type: ignore[union-attr]
    return int(number) * UNITS[unit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=5000)
    args = parser.parse_args()
    settings = StackSettings()
    client = redis.Redis.from_url(settings.redis_url)
    prefix = f"bench-mem-{uuid.uuid4().hex[:8]}"
    topic = "bench.iot_sensor_data"
    print(f"[state memory] {args.sensors} sensors over {PARTITIONS} partitions, prefix {prefix}")
    parts = _states(args.sensors)
    refused = ""
    try:
        try:
            for p, states in enumerate(parts):
                end = 0
                for _ in range(state_store.RING_SIZE):  # a backlog fills the ring
                    start, end = end, end + state_store.RING_EVERY
                    offsets = OffsetRange(topic=topic, partition=p, start=start, end=end)
                    state_store.save_states(client, prefix, offsets, states, states)
        except redis.OutOfMemoryError:
            refused = f"Redis refused the writes at partition {p}, offset {end} (maxmemory)"
        usage: dict[str, int] = {"live checkpoints": 0, "checkpoint ring": 0}
        for key in client.scan_iter(f"{prefix}:*"):
            kind = "checkpoint ring" if b"cleaner-ring" in key else "live checkpoints"
            usage[kind] += int(client.memory_usage(key, samples=0) or 0)
        one = next(iter(parts[0].values())).to_json()
        per_sensor = len(json.dumps(one, separators=(",", ":")))
        packed = len(zlib.compress(json.dumps(one).encode()))
    finally:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    limit = _maxmemory(redis.Redis.from_url(settings.redis_url), settings)
    total = sum(usage.values())
    print(f"  one sensor's state: {per_sensor} bytes of JSON ({packed} compressed)")
    print(f"  {'what':<18} {'MiB':>9} {'of maxmemory':>13}")
    for kind, size in [*usage.items(), ("total", total)]:
        print(f"  {kind:<18} {size / 2**20:>9.1f} {size / limit:>12.1%}")
    print(f"  maxmemory          {limit / 2**20:>9.1f}")
    verdict = "fits" if total < 0.5 * limit and not refused else "does NOT fit"
    if refused:
        print(f"  {refused}")
    print(
        f"[state memory] {args.sensors} sensors: {total / 2**20:.1f} MiB, {total / limit:.0%} "
        f"of maxmemory: {verdict} with half of it left for the broker and the run state"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
