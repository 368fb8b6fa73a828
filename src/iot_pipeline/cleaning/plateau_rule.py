"""Persistence judged by the neighbours: a plateau is stuck when the stations around it move.

A sensor that holds one value while the neighbouring sensors of its metric (other stations
within BUDDY_RADIUS_KM, at least MIN_BUDDIES of them) move is frozen: had it worked, the
signal they show would have moved it off its quantisation step. A sensor that holds one value
while they hold theirs is in calm weather. The cleaner alone (cleaning.state) judges a slow or
coarse sensor only after a long span; this rule judges it as soon as its plateau has lasted
NEIGHBOUR_MIN_SPAN (cleaning.state), from evidence.

How far the neighbours moved is told by their consensus over the plateau's span, cut into
buckets of the sensor's own interval (one around each of its readings; at most MAX_BUCKETS,
wider for a fast sensor's long plateau): each neighbouring sensor's mean per bucket, less its
own mean over the span (neighbours stand at different levels, and the consensus must not jump
when one of them is missing from a bucket); the consensus of a bucket is the median of those,
over the neighbours (their own noise mostly cancels out in the median; a change of the
weather does not). The plateau is stuck when the consensus moved (highest bucket minus
lowest) by at least NEIGHBOUR_STEPS of the sensor's own resolution (a working sensor would
have crossed several of its steps) and by at least the metric's NEIGHBOUR_MOVE (a working
fine sensor follows that much). Values where weather itself holds a sensor still are exempt
(cleaning.state.weather_plateau): humidity in fog, at the sensor's own ceiling, while drier
neighbours move; a temperature at the melting point.

A plateau's neighbours may be stored after it (their partition runs behind): a plateau not
judged stuck waits (processing.plateau_check keeps it in Redis, one per sensor), and each
later batch whose readings of the metric from other stations fall into its span judges it
again (`waiting_for`), until it ends more than RECHECK_SPAN before the newest reading seen.

Pure: the pipeline asks the store for the neighbours' consensus (processing.plateau_check), the
scored tests compute them from the simulated readings.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from iot_pipeline.cleaning.batch import CleanReading
from iot_pipeline.cleaning.buddy_rule import MIN_BUDDIES
from iot_pipeline.cleaning.state import SPAN_END, Hindsight, weather_plateau
from iot_pipeline.vocabulary import STUCK

NEIGHBOUR_STEPS = 5.0
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
MAX_BUCKETS = 24
RECHECK_SPAN = 6 * 3600.0  # seconds of event time a plateau waits for late neighbours


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
    interval: float
    lat: float
    lon: float

    @property
    def width(self) -> float:
        """The width of its buckets (seconds): its interval, or wider so that the span has at
        most MAX_BUCKETS."""
        return max(self.interval, (self.end - self.start) / MAX_BUCKETS)

    def to_json(self) -> str:
        return json.dumps(dataclasses.astuple(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> Plateau:
        sensor_id, station_id, metric, *numbers = json.loads(text)
        return cls(str(sensor_id), str(station_id), str(metric), *(float(n) for n in numbers))

    def bucket(self, event_time: float) -> int:
        """The bucket of the span (centred on the plateau's own readings when they come every
        interval) that a neighbour's reading at `event_time` falls into."""
        return int((event_time - self.start + self.width / 2) // self.width)

    def stuck(self) -> Hindsight:
        """The flag its readings get when the neighbours judge it stuck."""
        return Hindsight(STUCK, self.start, self.end + SPAN_END, self.value)


def open_plateaus(kept: Iterable[CleanReading]) -> list[Plateau]:
    """The plateaus these readings extend (the longest piece of each), in a stable order."""
    found: dict[tuple[str, float], Plateau] = {}
    for clean in kept:
        if clean.plateau is None or clean.resolution is None or not clean.interval:
            continue
        r = clean.reading
        start, end = clean.plateau
        key = (r.sensor_id, start)
        if key in found and found[key].end >= end:
            continue
        found[key] = Plateau(
            r.sensor_id, r.station_id, r.metric, r.value, start, end,
            clean.resolution, clean.interval, r.lat, r.lon,
        )  # fmt: skip
    return sorted(found.values(), key=lambda p: (p.sensor_id, p.start))


def waiting_for(
    waiting: Iterable[Plateau], kept: Iterable[CleanReading]
) -> tuple[list[Plateau], list[Plateau]]:
    """(to judge again, to forget): of the plateaus waiting for their neighbours, those whose
    span holds a reading of these of their metric from another station, and those that ended
    more than RECHECK_SPAN before the newest of these readings."""
    times: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for clean in kept:
        r = clean.reading
        times[r.metric].append((r.event_time.timestamp(), r.station_id))
    for found in times.values():
        found.sort()
    newest = max((found[-1][0] for found in times.values()), default=None)
    again: list[Plateau] = []
    forget: list[Plateau] = []
    for plateau in waiting:
        if newest is not None and plateau.end < newest - RECHECK_SPAN:
            forget.append(plateau)
            continue
        found = times.get(plateau.metric, [])
        low = bisect.bisect_left(found, (plateau.start, ""))
        high = bisect.bisect_right(found, (plateau.end, "\uffff"))
        if any(station != plateau.station_id for _, station in found[low:high]):
            again.append(plateau)
    return again, forget


def consensus(means: Mapping[str, Mapping[int, float]]) -> list[float]:
    """The neighbours' consensus, bucket by bucket, from each neighbour's mean per bucket (by
    sensor): the median over the neighbours of their means less their own mean over the span,
    in the buckets at least MIN_BUDDIES of them report."""
    centred: dict[int, list[float]] = defaultdict(list)
    for buckets in means.values():
        if len(buckets) < 2:
            continue
        level = sum(buckets.values()) / len(buckets)
        for bucket, mean in buckets.items():
            centred[bucket].append(mean - level)
    return [
        statistics.median(values)
        for _, values in sorted(centred.items())
        if len(values) >= MIN_BUDDIES
    ]


def frozen_among_moving(plateau: Plateau, means: Mapping[str, Mapping[int, float]]) -> bool:
    """Whether the neighbours around the plateau, by their means per bucket of its span (see
    Plateau.bucket), say that a working sensor would have changed its value."""
    if weather_plateau(plateau.metric, plateau.value):
        return False
    moved = consensus(means)
    if len(moved) < 2:
        return False
    limit = max(NEIGHBOUR_STEPS * plateau.resolution, NEIGHBOUR_MOVE[plateau.metric])
    return max(moved) - min(moved) >= limit
