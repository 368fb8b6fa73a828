"""The cleaner's per-sensor state, checkpointed in Redis per partition and offset.

A partition's key holds two checkpoints: the state before and after the last range processed.
A retried range finds the state as of its own start offset, so a replay cleans exactly as the
first run did (duplicates are not mistaken for redeliveries, spikes see the same history).
"""

from __future__ import annotations

import json
from typing import Any

import redis

from iot_pipeline.cleaning import SensorState
from iot_pipeline.processing.ranges import OffsetRange

Sensors = dict[str, SensorState]


def _key(prefix: str, offsets: OffsetRange) -> str:
    return f"{prefix}:cleaner-state:{offsets.topic}:{offsets.partition}"


def _decode(checkpoint: dict[str, Any]) -> Sensors:
    return {sensor: SensorState.from_json(data) for sensor, data in checkpoint["sensors"].items()}


def _encode(offset: int, sensors: Sensors) -> dict[str, Any]:
    return {"offset": offset, "sensors": {s: state.to_json() for s, state in sensors.items()}}


def load_states(client: redis.Redis, prefix: str, offsets: OffsetRange) -> Sensors:
    """The state as of `offsets.start` (best effort when that exact checkpoint is gone)."""
    raw = client.get(_key(prefix, offsets))
    if raw is None:
        return {}
    stored = json.loads(raw)
    for name in ("cur", "prev"):
        checkpoint = stored.get(name)
        if checkpoint and checkpoint["offset"] == offsets.start:
            return _decode(checkpoint)
    current = stored.get("cur")
    # a gap (offsets skipped or expired): continue from the newest state there is
    return _decode(current) if current and current["offset"] < offsets.start else {}


def save_states(
    client: redis.Redis, prefix: str, offsets: OffsetRange, before: Sensors, after: Sensors
) -> bool:
    """Checkpoint the states around this range, unless a later range already moved on."""
    key = _key(prefix, offsets)
    raw = client.get(key)
    if raw is not None:
        current = json.loads(raw).get("cur")
        if current and current["offset"] > offsets.end:
            return False
    document = {"prev": _encode(offsets.start, before), "cur": _encode(offsets.end, after)}
    client.set(key, json.dumps(document, separators=(",", ":")))
    return True
