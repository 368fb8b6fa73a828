"""Index names, spelled once: every module that reads or writes the search store asks here.

    <prefix>-readings-YYYY.MM.DD      raw readings, one index per UTC day of event time
    <prefix>-agg-1m-YYYY.MM.DD        1-minute window aggregates, by day
    <prefix>-agg-1h-YYYY.MM           1-hour aggregates, by month
    <prefix>-agg-1d-YYYY              1-day aggregates, by year
    <prefix>-sensors                  the sensor registry, one document per sensor
    <prefix>-qc-overrides             operators' accept and reject lists, one document each
    <prefix>-sensor-metadata          operators' declarations of sensors, one per sensor

Time-bucketed names let retention delete whole indices, each resolution on a schedule of its
own. The index templates (`elasticsearch/*.template.json`) match these patterns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from iot_pipeline.vocabulary import Resolution

_BUCKET_FORMAT: dict[str, str] = {"1m": "%Y.%m.%d", "1h": "%Y.%m", "1d": "%Y"}


def readings_index(prefix: str, event_time: datetime) -> str:
    """The daily index of raw readings for an event time (UTC)."""
    return _day_index(prefix, event_time.year, event_time.month, event_time.day)


@lru_cache(maxsize=4096)
def _day_index(prefix: str, year: int, month: int, day: int) -> str:
    # asked for every reading several times; formatting a date costs more than the lookup
    return f"{prefix}-readings-{year}.{month:02d}.{day:02d}"  # as %Y.%m.%d


def readings_pattern(prefix: str) -> str:
    """Every index of raw readings."""
    return f"{prefix}-readings-*"


@lru_cache(maxsize=65536)
def aggregates_index(prefix: str, resolution: Resolution | str, start: int) -> str:
    """The index holding a window's aggregate: 1m by day, 1h by month, 1d by year."""
    bucket = datetime.fromtimestamp(start, UTC).strftime(_BUCKET_FORMAT[resolution])
    return f"{prefix}-agg-{resolution}-{bucket}"


def aggregates_pattern(prefix: str, resolution: Resolution | str) -> str:
    """Every index of one resolution's aggregates."""
    return f"{prefix}-agg-{resolution}-*"


def sensors_index(prefix: str) -> str:
    """The sensor registry: one document per sensor, upserted by the workers."""
    return f"{prefix}-sensors"


def overrides_index(prefix: str) -> str:
    """Operators' quality-control overrides (accept and reject lists), one document each."""
    return f"{prefix}-qc-overrides"


def sensor_metadata_index(prefix: str) -> str:
    """What operators declared of their sensors (interval, calibration, active period), one
    document per sensor (id = sensor_id)."""
    return f"{prefix}-sensor-metadata"
