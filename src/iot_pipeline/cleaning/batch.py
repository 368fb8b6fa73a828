"""Clean a batch of raw Kafka records into flagged readings and dead letters."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from iot_pipeline.cleaning.rules import (
    INVALIDATING,
    Rejection,
    normalise_time,
    normalise_unit,
    not_in_future,
    parse,
    physical_range,
)
from iot_pipeline.cleaning.state import SensorState, sequential_checks
from iot_pipeline.schema import SensorReading


@dataclass(frozen=True)
class RawRecord:
    """One record as read from Kafka, with its coordinates."""

    value: bytes
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DeadLetter:
    """A record that cannot become a reading: original bytes, reason, stage and source."""

    record: RawRecord
    reason: str
    stage: str
    detail: str


@dataclass(frozen=True)
class CleanReading:
    """A reading in canonical units with its quality flags; `valid` ones feed aggregates."""

    reading: SensorReading
    flags: tuple[str, ...]
    source: RawRecord
    original_value: float
    original_unit: str

    @property
    def valid(self) -> bool:
        return not INVALIDATING.intersection(self.flags)


@dataclass(frozen=True)
class CleaningPolicy:
    """Tolerances of the cleaner."""

    allowed_lateness: timedelta = timedelta(hours=24)
    max_clock_skew: timedelta = timedelta(minutes=5)


@dataclass
class BatchResult:
    """What a batch became."""

    readings: list[CleanReading] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def clean_batch(
    records: Iterable[RawRecord],
    states: MutableMapping[str, SensorState],
    ingest_time: datetime,
    policy: CleaningPolicy = CleaningPolicy(),
) -> BatchResult:
    """Apply every rule, in Kafka order; `states` is read and updated per sensor."""
    result = BatchResult()
    lateness = policy.allowed_lateness.total_seconds()
    for record in records:
        parsed = parse(record.value)
        if isinstance(parsed, Rejection):
            result.dead_letters.append(_dead(record, parsed))
            continue
        normalised = normalise_unit(parsed)
        if isinstance(normalised, Rejection):
            result.dead_letters.append(_dead(record, normalised))
            continue
        reading, flags = normalised
        reading = normalise_time(reading)
        flags += physical_range(reading)
        flags += not_in_future(reading, ingest_time, policy.max_clock_skew)
        state = states.get(reading.sensor_id)
        if state is None:
            state = states[reading.sensor_id] = SensorState()
        flags += sequential_checks(
            state,
            reading.event_id,
            reading.metric,
            reading.event_time.timestamp(),
            reading.value,
            lateness,
            trusted=not INVALIDATING.intersection(flags),
        )
        result.readings.append(CleanReading(reading, flags, record, parsed.value, parsed.unit))
    return result


def _dead(record: RawRecord, rejection: Rejection) -> DeadLetter:
    return DeadLetter(record, rejection.reason, rejection.stage, rejection.detail)
