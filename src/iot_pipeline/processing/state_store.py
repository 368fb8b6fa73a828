"""The cleaner's per-sensor state, checkpointed in Redis per partition and offset.

The live key of a partition holds two checkpoints: the state before and after the last range
processed, so a retried range finds the state as of its own start offset and cleans exactly
as the first run did. Saves are compare-and-set (a range never overwrites a checkpoint that a
later range already moved past), and only the live pipeline writes the live key.

Every `RING_EVERY` offsets a copy also goes into the partition's ring of older checkpoints
(the newest `RING_SIZE` kept), compressed and without the duplicate memory (most of a
state's bytes: at 5,000 sensors the ring would not fit in Redis with it; `make bench`,
bench_state_memory). A replay warming up from a ring checkpoint rebuilds that memory from
the records it cleans; a duplicate of a record before the checkpoint is then caught by the
store (readings are written with `create`), not flagged by the cleaner.

A replay starts from the nearest checkpoint at or before its first offset (or from empty
state at the log start), warms up by cleaning the records in between without storing them,
and keeps its own state under a key of its own: its flags are the original run's, and the
live pipeline never sees its state.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from iot_pipeline.cleaning import SensorState
from iot_pipeline.contracts.ranges import OffsetRange

Sensors = dict[str, SensorState]
RING_EVERY = 20_000  # offsets between two checkpoints of the ring
RING_SIZE = 32  # checkpoints kept in a partition's ring
# A replay warms its state up from the nearest checkpoint by cleaning at most this many
# records it does not store; further back, it starts from empty state (and says so).
WARM_UP_LIMIT = 500_000
REPLAY_STATE_SECONDS = 7 * 24 * 3600  # a replay's own checkpoints outlive any replay run


def _live_key(prefix: str, offsets: OffsetRange) -> str:
    return f"{prefix}:cleaner-state:{offsets.topic}:{offsets.partition}"


def _ring_key(prefix: str, offsets: OffsetRange) -> str:
    return f"{prefix}:cleaner-ring:{offsets.topic}:{offsets.partition}"


def _replay_key(prefix: str, offsets: OffsetRange, scope: str) -> str:
    return f"{prefix}:cleaner-state:replay:{scope}:{offsets.topic}:{offsets.partition}"


def _decode(checkpoint: dict[str, Any]) -> Sensors:
    return {sensor: SensorState.from_json(data) for sensor, data in checkpoint["sensors"].items()}


def _encode(offset: int, sensors: Sensors, seen: bool = True) -> dict[str, Any]:
    return {
        "offset": offset,
        "sensors": {s: state.to_json(seen) for s, state in sensors.items()},
    }


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def _exact(client: redis.Redis, key: str, start: int) -> Sensors | None:
    raw = client.get(key)
    if raw is None:
        return None
    stored = json.loads(raw)
    for name in ("cur", "prev"):
        checkpoint = stored.get(name)
        if checkpoint and checkpoint["offset"] == start:
            return _decode(checkpoint)
    return None


def load_states(client: redis.Redis, prefix: str, offsets: OffsetRange) -> Sensors:
    """The live state as of `offsets.start` (best effort when that exact checkpoint is gone)."""
    found = _exact(client, _live_key(prefix, offsets), offsets.start)
    if found is not None:
        return found
    raw = client.get(_live_key(prefix, offsets))
    current = json.loads(raw).get("cur") if raw is not None else None
    # a gap (offsets skipped, expired or quarantined): continue from the newest state there is
    return _decode(current) if current and current["offset"] < offsets.start else {}


def save_states(
    client: redis.Redis, prefix: str, offsets: OffsetRange, before: Sensors, after: Sensors
) -> bool:
    """Checkpoint the live states around this range, unless a later range already moved on.

    Compare-and-set: the check and the write are one transaction (WATCH), so two ranges of
    the same partition finishing together cannot interleave."""
    key = _live_key(prefix, offsets)
    document = _dumps({"prev": _encode(offsets.start, before), "cur": _encode(offsets.end, after)})
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.get(key)
                if raw is not None:
                    current = json.loads(raw).get("cur")
                    if current and current["offset"] > offsets.end:
                        pipe.unwatch()
                        return False
                pipe.multi()
                pipe.set(key, document)
                pipe.execute()
                break
            except redis.WatchError:
                continue
    _keep_in_ring(client, prefix, offsets, after)
    return True


def _keep_in_ring(client: redis.Redis, prefix: str, offsets: OffsetRange, after: Sensors) -> None:
    ring = _ring_key(prefix, offsets)
    held = sorted(int(o) for o in client.hkeys(ring))
    if held and offsets.end - held[-1] < RING_EVERY:
        return
    pipe = client.pipeline(transaction=True)
    packed = zlib.compress(_dumps(_encode(offsets.end, after, seen=False)).encode())
    pipe.hset(ring, str(offsets.end), packed)
    for old in held[: max(0, len(held) + 1 - RING_SIZE)]:
        pipe.hdel(ring, str(old))
    pipe.execute()


@dataclass(frozen=True)
class ReplayStart:
    """Where a replayed range's state comes from: a checkpoint at `offset` <= the range's
    start; the records of [offset, start) are cleaned first to bring it up to the start."""

    states: Sensors
    offset: int


def load_replay_states(
    client: redis.Redis,
    prefix: str,
    offsets: OffsetRange,
    scope: str,
    log_start: Callable[[], int],
) -> ReplayStart:
    """The state a replay's range starts from: its own previous range's, else the nearest
    checkpoint at or before its start (live key, ring), else empty state at the log start."""
    own = _exact(client, _replay_key(prefix, offsets, scope), offsets.start)
    if own is not None:
        return ReplayStart(own, offsets.start)
    best: ReplayStart | None = None
    raw = client.get(_live_key(prefix, offsets))
    if raw is not None:
        stored = json.loads(raw)
        for name in ("prev", "cur"):
            checkpoint = stored.get(name)
            if checkpoint and _better(best, checkpoint["offset"], offsets.start):
                best = ReplayStart(_decode(checkpoint), checkpoint["offset"])
    ring = _ring_key(prefix, offsets)
    candidates = [int(o) for o in client.hkeys(ring) if _better(best, int(o), offsets.start)]
    if candidates:
        packed = client.hget(ring, str(max(candidates)))
        if isinstance(packed, bytes):
            checkpoint = json.loads(zlib.decompress(packed))
            best = ReplayStart(_decode(checkpoint), checkpoint["offset"])
    return best or ReplayStart({}, min(log_start(), offsets.start))


def _better(best: ReplayStart | None, offset: int, start: int) -> bool:
    return offset <= start and (best is None or offset > best.offset)


def save_replay_states(
    client: redis.Redis, prefix: str, offsets: OffsetRange, scope: str, after: Sensors
) -> None:
    """The replay's own checkpoint after this range (never the live one)."""
    document = _dumps({"cur": _encode(offsets.end, after)})
    client.set(_replay_key(prefix, offsets, scope), document, ex=REPLAY_STATE_SECONDS)
