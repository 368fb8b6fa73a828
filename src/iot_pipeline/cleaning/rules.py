"""Rules that look at one reading alone: parse, schema, units, physical range, clock.

Each returns either what it found (flags) or a Rejection with a reason code and the stage
that failed; rejected records go to the dead-letter topic, flagged readings are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from iot_pipeline.schema import METRICS, SensorReading
from iot_pipeline.vocabulary import (
    BEYOND_RETENTION,
    FUTURE_TIMESTAMP,
    IMPOSSIBLE_VALUE,
    KEY_MISMATCH,
    MALFORMED_JSON,
    SCHEMA_INVALID,
    TIME_OUT_OF_RANGE,
    UNIT_CONVERTED,
    UNIT_MISMATCH,
)


@dataclass(frozen=True)
class Rejection:
    """Why a record cannot become a reading."""

    reason: str
    stage: str
    detail: str


def parse(raw: bytes) -> SensorReading | Rejection:
    """Bytes to a schema-valid reading, or a rejection saying what was wrong."""
    try:
        # One pass for the common case; only a failure pays for finding out which kind.
        return SensorReading.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejection(MALFORMED_JSON, "parse", str(exc)[:200])
    except (RecursionError, ValueError) as exc:
        # nested deeper than the interpreter's stack, or an integer beyond Python's digit limit
        return Rejection(MALFORMED_JSON, "parse", f"{type(exc).__name__}: {str(exc)[:200]}")
    if not isinstance(document, dict):
        return Rejection(SCHEMA_INVALID, "schema", "a reading is a JSON object")
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in errors)
    return Rejection(SCHEMA_INVALID, "schema", problems[:500])


def normalise_unit(reading: SensorReading) -> tuple[SensorReading, tuple[str, ...]] | Rejection:
    """Convert to the metric's canonical unit (°F -> °C); refuse units that cannot apply."""
    canonical = METRICS[reading.metric].unit
    if reading.unit == canonical:
        return reading, ()
    if reading.metric == "temperature" and reading.unit == "°F":
        celsius = round((reading.value - 32.0) / 1.8, 3)
        return reading.model_copy(update={"value": celsius, "unit": canonical}), (UNIT_CONVERTED,)
    return Rejection(
        UNIT_MISMATCH, "normalise", f"{reading.metric} cannot be in {reading.unit} ({canonical})"
    )


def plausible_time(
    reading: SensorReading, earliest: datetime, reference: datetime, max_ahead: timedelta
) -> Rejection | None:
    """Refuse event times no sensor of ours can have: before `earliest`, or more than
    `max_ahead` after `reference` (when the record reached Kafka). Checked before any
    conversion: the calendar's edges overflow once shifted to UTC."""
    if reading.event_time < earliest:
        return Rejection(
            TIME_OUT_OF_RANGE,
            "time",
            f"event_time {reading.event_time.isoformat()} is before {earliest.isoformat()}",
        )
    if reading.event_time - reference > max_ahead:
        return Rejection(
            TIME_OUT_OF_RANGE,
            "time",
            f"event_time {reading.event_time.isoformat()} is more than {max_ahead} after "
            f"the record reached Kafka ({reference.isoformat()})",
        )
    return None


def within_retention(reading: SensorReading, horizon: datetime | None) -> Rejection | None:
    """Refuse a reading older than the first day whose readings and 1-minute windows are still
    kept: stored, it would recreate a deleted day and rewrite that day's kept coarse windows
    from this one reading."""
    if horizon is None or reading.event_time >= horizon:
        return None
    return Rejection(
        BEYOND_RETENTION,
        "time",
        f"event_time {reading.event_time.isoformat()} is before {horizon.isoformat()}, the "
        "oldest day still kept (RETENTION_DAYS, AGGREGATE_RETENTION_DAYS_1M)",
    )


def key_matches(key: bytes | None, reading: SensorReading) -> Rejection | None:
    """The Kafka key is the sensor id: it decides the partition, hence the sensor's order and
    which partition's cleaner state holds it. A record keyed for another sensor is refused;
    one without a key (a console producer) is accepted as it is."""
    if key is None or key == reading.sensor_id.encode():
        return None
    shown = key[:80].decode("utf-8", "replace")
    return Rejection(
        KEY_MISMATCH, "key", f"Kafka key {shown!r} is not sensor_id {reading.sensor_id!r}"
    )


def normalise_time(reading: SensorReading) -> SensorReading:
    """Event times with another UTC offset become UTC (daily indices and windows are UTC)."""
    if not reading.event_time.utcoffset():
        return reading
    return reading.model_copy(update={"event_time": reading.event_time.astimezone(UTC)})


def physical_range(reading: SensorReading) -> tuple[str, ...]:
    """Flag values the metric cannot physically take (canonical units), beyond what an
    instrument reads within its accuracy (MetricSpec.tolerance)."""
    spec = METRICS[reading.metric]
    low, high = spec.minimum - spec.tolerance, spec.maximum + spec.tolerance
    return () if low <= reading.value <= high else (IMPOSSIBLE_VALUE,)


def not_in_future(
    reading: SensorReading, ingest_time: datetime, tolerance: timedelta
) -> tuple[str, ...]:
    """Flag event times ahead of the ingest clock by more than the tolerated skew."""
    return (FUTURE_TIMESTAMP,) if reading.event_time > ingest_time + tolerance else ()
