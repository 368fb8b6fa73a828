"""Rules across the sensors of one station: PM2.5 is a fraction of PM10, never more.

A station's sensors are different Kafka keys, so they land on different partitions and in
different tasks; this check therefore runs on stored readings (see
`processing.cross_metric`), after both halves of a pair can be visible. Readings are paired by
station and sample slot (`floor(event time / sample interval)`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from iot_pipeline.vocabulary import CROSS_METRIC, INVALIDATING

# (finer, coarser): the finer fraction is part of the coarser one, so it cannot be larger.
NESTED_METRICS = (("pm25", "pm10"),)
CROSS_METRICS = frozenset(m for pair in NESTED_METRICS for m in pair)


@dataclass(frozen=True)
class StationReading:
    """What the cross-metric rule needs of a stored reading."""

    event_id: str
    station_id: str
    metric: str
    epoch: float
    value: float
    flags: tuple[str, ...]

    @property
    def trusted(self) -> bool:
        """Valid on its own: a reading another rule already invalidated proves nothing."""
        return not (INVALIDATING - {CROSS_METRIC}).intersection(self.flags)


def cross_metric_violations(readings: Iterable[StationReading], sample_interval: float) -> set[str]:
    """Event ids of readings in a finer-above-coarser pair (both halves are flagged).

    Which half is wrong cannot be told from the pair alone, so neither enters the statistics.
    """
    slots: dict[tuple[str, int], dict[str, list[StationReading]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for reading in readings:
        if reading.metric in CROSS_METRICS and reading.trusted:
            slot = int(reading.epoch // sample_interval)
            slots[(reading.station_id, slot)][reading.metric].append(reading)
    flagged: set[str] = set()
    for by_metric in slots.values():
        for finer, coarser in NESTED_METRICS:
            for small in by_metric.get(finer, []):
                for large in by_metric.get(coarser, []):
                    if small.value > large.value:
                        flagged.update((small.event_id, large.event_id))
    return flagged
