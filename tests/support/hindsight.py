"""Flags found in hindsight, put on the earlier readings they reach the way the pipeline puts
them on the stored ones (processing.hindsight): same sensor and value, event time in the
hindsight's span, the flag appended once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from iot_pipeline.cleaning import CleanReading


def with_hindsight(readings: Sequence[CleanReading]) -> list[list[str]]:
    """Each reading's flags, with those later readings put on it in hindsight."""
    flags = [list(clean.flags) for clean in readings]
    by_sensor: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for n, clean in enumerate(readings):
        by_sensor[clean.reading.sensor_id].append((clean.reading.event_time.timestamp(), n))
    for clean in readings:
        for later in clean.hindsight:
            for epoch, n in by_sensor[clean.reading.sensor_id]:
                reached = later.start <= epoch < later.end
                same = readings[n].reading.value == later.value
                if reached and same and later.flag not in flags[n]:
                    flags[n].append(later.flag)
    return flags
