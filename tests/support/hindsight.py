"""Flags found in hindsight, put on the earlier readings they reach the way the pipeline puts
them on the stored ones (processing.hindsight): same sensor and value, event time in the
hindsight's span, the flag appended once."""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence

from iot_pipeline.cleaning import CleanReading, Hindsight, SensorState
from iot_pipeline.cleaning.buddy_rule import BUDDY_RADIUS_KM, SlotValue, distance_km
from iot_pipeline.cleaning.plateau_rule import (
    Plateau,
    frozen_among_moving,
    open_plateaus,
    waiting_for,
)
from iot_pipeline.cleaning.state import frozen_by_neighbours
from iot_pipeline.vocabulary import INVALIDATING


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


class Neighbourhood:
    """The neighbour rule (cleaning.plateau_rule) batch by batch, as the pipeline runs it range
    by range (processing.plateau_check): a batch's readings are stored, then each plateau it
    extended is judged by what is stored so far, and a plateau judged stuck is told to its
    sensor's state (cleaning.state.frozen_by_neighbours) and flags its readings in hindsight;
    one not judged stuck waits for neighbours stored later, as in Redis. The neighbours'
    readings are those no rule invalidated when they were cleaned."""

    def __init__(self) -> None:
        self.series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.sites: dict[str, tuple[str, str, float, float]] = {}
        self.by_metric: dict[str, set[str]] = defaultdict(set)
        self.found: list[tuple[str, Hindsight]] = []
        self.waiting: dict[str, Plateau] = {}
        self.asked: set[str] = set()  # waiting plateaus the stream reached past the end of

    def judge(self, kept: Sequence[CleanReading], states: Mapping[str, SensorState]) -> None:
        for clean in kept:
            r = clean.reading
            self.sites[r.sensor_id] = (r.station_id, r.metric, r.lat, r.lon)
            self.by_metric[r.metric].add(r.sensor_id)
            if not INVALIDATING.intersection(clean.flags):
                bisect.insort(self.series[r.sensor_id], (r.event_time.timestamp(), r.value))
        own = open_plateaus(kept)
        mine = {p.sensor_id for p in own}
        others = [p for p in self.waiting.values() if p.sensor_id not in mine]
        again, forget = waiting_for(others, kept)
        # one stream is one partition: a plateau it reached past the end of is asked for good
        again = [p for p in again if p.sensor_id not in self.asked]
        for plateau in forget:
            del self.waiting[plateau.sensor_id]
        newest = max((c.reading.event_time.timestamp() for c in kept), default=-math.inf)
        for plateau in own:
            self.waiting[plateau.sensor_id] = plateau
            self.asked.discard(plateau.sensor_id)
        for plateau in own + again:
            if frozen_among_moving(plateau, self._means(plateau)):
                self.waiting.pop(plateau.sensor_id, None)
                self.found.append((plateau.sensor_id, plateau.stuck()))
                state = states.get(plateau.sensor_id)
                if state is not None:
                    frozen_by_neighbours(state, plateau.start, plateau.end, plateau.value)
            elif newest > plateau.end:
                self.asked.add(plateau.sensor_id)

    def _means(self, plateau: Plateau) -> dict[str, dict[int, float]]:
        means: dict[str, dict[int, float]] = {}
        for other in self.by_metric[plateau.metric]:
            station, _, lat, lon = self.sites[other]
            if station == plateau.station_id or _km(plateau, lat, lon) > BUDDY_RADIUS_KM:
                continue
            points = self.series[other]
            low = bisect.bisect_left(points, (plateau.start, -math.inf))
            high = bisect.bisect_right(points, (plateau.end, math.inf))
            buckets: dict[int, list[float]] = defaultdict(list)
            for at, value in points[low:high]:
                buckets[plateau.bucket(at)].append(value)
            means[other] = {b: statistics.fmean(values) for b, values in buckets.items()}
        return means

    def flag(self, readings: Sequence[CleanReading], flags: list[list[str]]) -> None:
        """Add the flags the neighbours found to the readings they reach."""
        own: dict[str, list[int]] = defaultdict(list)
        for n, clean in enumerate(readings):
            own[clean.reading.sensor_id].append(n)
        for sensor_id, later in self.found:
            for n in own[sensor_id]:
                r = readings[n].reading
                reached = later.start <= r.event_time.timestamp() < later.end
                if reached and r.value == later.value and later.flag not in flags[n]:
                    flags[n].append(later.flag)


def _km(plateau: Plateau, lat: float, lon: float) -> float:
    here = SlotValue("", "", plateau.lat, plateau.lon, 0.0)
    return distance_km(here, SlotValue("", "", lat, lon, 0.0))
