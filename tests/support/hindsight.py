"""Flags found in hindsight, put on the earlier readings they reach the way the pipeline puts
them on the stored ones (processing.hindsight): same sensor and value, event time in the
hindsight's span, the flag appended once."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence

from iot_pipeline.cleaning import CleanReading
from iot_pipeline.cleaning.buddy_rule import BUDDY_RADIUS_KM, SlotValue, distance_km
from iot_pipeline.cleaning.plateau_rule import Plateau, frozen_among_moving, open_plateaus
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


def neighbour_verdicts(readings: Sequence[CleanReading], flags: list[list[str]]) -> None:
    """Add `stuck` where the neighbours judge a plateau frozen (cleaning.plateau_rule), with
    their moves computed from these readings as the pipeline computes them from the store
    (processing.plateau_check): each neighbouring sensor's change over the plateau's span
    (last minus first of its readings no rule invalidated)."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    sites: dict[str, tuple[str, str, float, float]] = {}
    for n, clean in enumerate(readings):
        r = clean.reading
        sites[r.sensor_id] = (r.station_id, r.metric, r.lat, r.lon)
        if not INVALIDATING.intersection(flags[n]):
            series[r.sensor_id].append((r.event_time.timestamp(), r.value))
    for points in series.values():
        points.sort()
    own: dict[str, list[int]] = defaultdict(list)
    for n, clean in enumerate(readings):
        own[clean.reading.sensor_id].append(n)
    by_metric: dict[str, list[str]] = defaultdict(list)
    for sensor_id, (_, metric, _, _) in sites.items():
        by_metric[metric].append(sensor_id)
    for plateau in open_plateaus(readings):
        moves = []
        for other in by_metric[plateau.metric]:
            station, _, lat, lon = sites[other]
            if station == plateau.station_id or _km(plateau, lat, lon) > BUDDY_RADIUS_KM:
                continue
            points = series[other]
            low = bisect.bisect_left(points, (plateau.start, -math.inf))
            high = bisect.bisect_right(points, (plateau.end, math.inf))
            values = [v for _, v in points[low:high]]
            if len(values) >= 2:
                moves.append(values[-1] - values[0])
        if not frozen_among_moving(plateau, moves):
            continue
        later = plateau.stuck()
        for n in own[plateau.sensor_id]:
            r = readings[n].reading
            if r.value != later.value:
                continue
            if later.start <= r.event_time.timestamp() < later.end and later.flag not in flags[n]:
                flags[n].append(later.flag)


def _km(plateau: Plateau, lat: float, lon: float) -> float:
    here = SlotValue("", "", plateau.lat, plateau.lon, 0.0)
    return distance_km(here, SlotValue("", "", lat, lon, 0.0))
