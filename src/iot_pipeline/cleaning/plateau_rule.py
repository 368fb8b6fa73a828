"""Persistence judged by the neighbours: a plateau is stuck when the stations around it move.

A sensor that holds one value while the neighbouring sensors of its metric (other stations
within BUDDY_RADIUS_KM, at least MIN_BUDDIES of them) move is frozen: had it worked, the
signal they show would have moved it off its quantisation step. A sensor that holds one value
while they hold theirs is in calm weather. The cleaner alone (cleaning.state) judges a slow or
coarse sensor only after a long span; this rule judges it as soon as its plateau has lasted
NEIGHBOUR_MIN_SPAN (cleaning.state), from evidence.

How far the neighbours moved is their consensus: the median, over the neighbouring sensors,
of each one's change from its first to its last trusted reading within the plateau's span
(their own noise mostly cancels out in the median; a change of the weather does not). The
plateau is stuck when that consensus moved by at least NEIGHBOUR_STEPS of the sensor's own
resolution (a working sensor would have crossed a step) and by at least the metric's
NEIGHBOUR_MOVE (a working fine sensor follows that much).

Pure: the pipeline asks the store for the neighbours' ranges (processing.plateau_check), the
scored tests compute them from the simulated readings.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from iot_pipeline.cleaning.batch import CleanReading
from iot_pipeline.cleaning.buddy_rule import MIN_BUDDIES
from iot_pipeline.cleaning.state import Hindsight
from iot_pipeline.vocabulary import STUCK

NEIGHBOUR_STEPS = 3.0
# The least change of the neighbours' consensus that a working sensor must follow, whatever
# its resolution: more than a calm night moves a city's stations over a few hours.
NEIGHBOUR_MOVE = {
    "temperature": 0.5,
    "humidity": 2.0,
    "pm25": 2.0,
    "pm10": 4.0,
    "no2": 4.0,
    "o3": 4.0,
    "co": 0.1,
}
SPAN_END = 0.5  # seconds: a plateau's hindsight reaches its last reading


@dataclass(frozen=True)
class Plateau:
    """A run of one sensor's identical values not judged stuck yet, as long as a range saw it:
    from its first value's event time to its latest's."""

    sensor_id: str
    station_id: str
    metric: str
    value: float
    start: float
    end: float
    resolution: float
    lat: float
    lon: float

    def stuck(self) -> Hindsight:
        """The flag its readings get when the neighbours judge it stuck."""
        return Hindsight(STUCK, self.start, self.end + SPAN_END, self.value)


def open_plateaus(kept: Iterable[CleanReading]) -> list[Plateau]:
    """The plateaus these readings extend (the longest piece of each), in a stable order."""
    found: dict[tuple[str, float], Plateau] = {}
    for clean in kept:
        if clean.plateau is None or clean.resolution is None:
            continue
        r = clean.reading
        end = r.event_time.timestamp()
        key = (r.sensor_id, clean.plateau)
        if key in found and found[key].end >= end:
            continue
        found[key] = Plateau(
            r.sensor_id, r.station_id, r.metric, r.value, clean.plateau, end,
            clean.resolution, r.lat, r.lon,
        )  # fmt: skip
    return sorted(found.values(), key=lambda p: (p.sensor_id, p.start))


def frozen_among_moving(plateau: Plateau, changes: Sequence[float]) -> bool:
    """Whether the neighbours' changes over the plateau's span (each neighbouring sensor's
    last trusted value in it minus its first) say that a working sensor would have changed
    its value."""
    if len(changes) < MIN_BUDDIES:
        return False
    limit = max(NEIGHBOUR_STEPS * plateau.resolution, NEIGHBOUR_MOVE[plateau.metric])
    return abs(statistics.median(changes)) >= limit
