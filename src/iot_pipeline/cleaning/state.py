"""Per-sensor state across batches, and the rules that need it (duplicates, lateness,
spikes, stuck values). The state is plain data so that it can live in Redis, never only in
a worker's memory."""

from __future__ import annotations

import statistics
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from iot_pipeline.vocabulary import DUPLICATE, RATE_OF_CHANGE, SPIKE, STUCK, TOO_LATE

# A reading further than this from the median of its sensor's recent valid readings is a spike
# (canonical units). Chosen well above noise plus an hour of the fastest normal change.
SPIKE_THRESHOLD = {
    "temperature": 7.0,
    "humidity": 25.0,
    "pm25": 45.0,
    "pm10": 100.0,
    "no2": 100.0,
    "o3": 120.0,
    "co": 2.0,
}
# Fastest physical change per minute; a jump from the previous valid reading beyond this
# (plus half the spike threshold for sensor noise) is flagged as a rate-of-change violation.
MAX_RATE_PER_MINUTE = {
    "temperature": 3.0,
    "humidity": 10.0,
    "pm25": 40.0,
    "pm10": 80.0,
    "no2": 80.0,
    "o3": 80.0,
    "co": 1.5,
}
RATE_WINDOW = 600.0  # only readings this close in time are compared
HISTORY = 8  # valid readings kept per sensor for the spike median
HISTORY_MAX_AGE = 2 * 3600.0  # older history says nothing about the present value
STUCK_REPEATS = 3  # this many identical consecutive values make a stuck sensor
SEEN_IDS = 512  # recent event ids kept per sensor, for duplicates


@dataclass
class SensorState:
    """What the cleaner remembers about one sensor."""

    watermark: float = float("-inf")  # newest trusted event time (epoch seconds)
    history: list[tuple[float, float]] = field(default_factory=list)  # (time, value), valid
    last_value: float | None = None
    repeats: int = 0
    seen: list[str] = field(default_factory=list)  # oldest first, unique
    touched: float = float("-inf")  # ingest time of its newest reading (epoch seconds)
    # The same ids as a set: membership in O(1); not part of the stored state.
    _seen_index: set[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._seen_index = set(self.seen)

    def remember(self, event_id: str) -> bool:
        """Record an event id; False when it was already among the recent ones."""
        if event_id in self._seen_index:
            return False
        self.seen.append(event_id)
        self._seen_index.add(event_id)
        while len(self.seen) > SEEN_IDS:
            self._seen_index.discard(self.seen.pop(0))
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "watermark": self.watermark if self.watermark != float("-inf") else None,
            "history": self.history,
            "last_value": self.last_value,
            "repeats": self.repeats,
            "seen": self.seen,
            "touched": self.touched if self.touched != float("-inf") else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SensorState:
        watermark = data.get("watermark")
        touched = data.get("touched", watermark)  # a state saved before `touched` existed
        return cls(
            watermark=float("-inf") if watermark is None else float(watermark),
            touched=float("-inf") if touched is None else float(touched),
            history=[(float(t), float(v)) for t, v in data.get("history", [])],
            last_value=data.get("last_value"),
            repeats=int(data.get("repeats", 0)),
            seen=list(data.get("seen", [])),
        )


def sequential_checks(
    state: SensorState,
    event_id: str,
    metric: str,
    event_time: float,
    value: float,
    allowed_lateness: float,
    trusted: bool,
) -> tuple[str, ...]:
    """Flags from the sensor's past, and the state updated with this reading.

    `trusted` is False when an earlier rule already invalidated the reading: it is still
    checked for duplication but does not move the watermark or the history.
    """
    if not state.remember(event_id):
        return (DUPLICATE,)

    flags: list[str] = []
    if event_time < state.watermark - allowed_lateness:
        flags.append(TOO_LATE)
    if not trusted:
        # already invalid (impossible, from the future): says nothing about the signal
        return tuple(flags)

    recent = [v for t, v in state.history if abs(event_time - t) <= HISTORY_MAX_AGE]
    if len(recent) >= 3 and abs(value - statistics.median(recent)) > SPIKE_THRESHOLD[metric]:
        flags.append(SPIKE)
    earlier = [(t, v) for t, v in state.history if 0 < event_time - t <= RATE_WINDOW]
    if earlier:
        t_prev, v_prev = earlier[-1]
        allowed = SPIKE_THRESHOLD[metric] / 2 + MAX_RATE_PER_MINUTE[metric] * (
            (event_time - t_prev) / 60.0
        )
        if abs(value - v_prev) > allowed:
            flags.append(RATE_OF_CHANGE)
    # A spike or an out-of-order reading is no link in a run of identical values.
    if not flags and event_time >= state.watermark:
        repeated = state.last_value is not None and value == state.last_value
        state.repeats = state.repeats + 1 if repeated else 1
        state.last_value = value
        if state.repeats >= STUCK_REPEATS:
            flags.append(STUCK)

    if not flags:
        state.watermark = max(state.watermark, event_time)
        state.history.append((event_time, value))
        state.history.sort()
        del state.history[:-HISTORY]
    return tuple(flags)


def evict_idle(states: MutableMapping[str, SensorState], now: float, idle: float) -> list[str]:
    """Forget the sensors without a reading for more than `idle` seconds of ingest time (their
    readings would be refused or judged afresh anyway); returns who was forgotten. Keeps the
    state of a network bounded by the sensors active within `idle`."""
    gone = [sensor for sensor, state in states.items() if state.touched < now - idle]
    for sensor in gone:
        del states[sensor]
    return gone
