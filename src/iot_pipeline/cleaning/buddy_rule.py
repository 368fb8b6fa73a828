"""Level 3 of quality control: spatial consistency (the buddy check).

A sensor's value in a time slot is compared with what its neighbours of the same metric
(other stations within BUDDY_RADIUS_KM) report in the same slot. It is questioned when it is
far from their median, by more than BUDDY_K robust standard deviations (1.4826 x the median
absolute deviation of the neighbours) and by more than the metric's BUDDY_TOLERANCE, a
difference that neighbouring stations can genuinely show (a park and a busy road, the sea
breeze). A sensor with fewer than MIN_BUDDIES neighbours reporting is not judged: absence
of evidence is no verdict.

Pure: it sees one value per sensor and slot (the mean of its readings that no other rule
invalidated, with their lowest and highest). Its neighbours are compared by their means; a
sensor is questioned only when all its readings of the slot lie beyond the limit on one
side, so a single spike inside a slot never questions the readings around it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

BUDDY_SLOT = 600.0  # seconds: sensors are compared slot by slot
BUDDY_RADIUS_KM = 10.0
MIN_BUDDIES = 3
BUDDY_K = 4.0
# The largest difference neighbouring stations show in normal weather and traffic: a value
# this far from its neighbours' median is only questioned when it is also far in their
# spread. Temperature: urban heat island and sea breeze, a few degrees within a city.
# Humidity follows temperature. Pollutants: a road-side station can read several times a
# background station nearby.
BUDDY_TOLERANCE = {
    "temperature": 5.0,
    "humidity": 20.0,
    "pm25": 50.0,
    "pm10": 100.0,
    "no2": 120.0,
    "o3": 100.0,
    "co": 3.0,
}


@dataclass(frozen=True)
class SlotValue:
    """One sensor's value in one slot (the mean of its readings, and their lowest and
    highest), and where it stands."""

    sensor_id: str
    station_id: str
    lat: float
    lon: float
    value: float
    low: float | None = None
    high: float | None = None

    def beyond(self, centre: float, limit: float) -> bool:
        """Whether all of its readings in the slot lie further than `limit` on one side of
        `centre`: a sensor that reads off for the whole slot, not one spike in it (spikes
        are the temporal rules' part)."""
        low = self.value if self.low is None else self.low
        high = self.value if self.high is None else self.high
        return low - centre > limit or centre - high > limit


def distance_km(a: SlotValue, b: SlotValue) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat = lat2 - lat1
    dlon = math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def spatial_outliers(metric: str, values: Mapping[str, SlotValue]) -> tuple[set[str], set[str]]:
    """(questioned, judged): the sensors of one metric and slot far from their neighbours,
    and every sensor that had enough neighbours to be judged at all."""
    questioned: set[str] = set()
    judged: set[str] = set()
    tolerance = BUDDY_TOLERANCE[metric]
    sites = list(values.values())
    for site in sites:
        buddies = [
            other.value
            for other in sites
            if other.station_id != site.station_id and distance_km(site, other) <= BUDDY_RADIUS_KM
        ]
        if len(buddies) < MIN_BUDDIES:
            continue
        judged.add(site.sensor_id)
        centre = statistics.median(buddies)
        spread = 1.4826 * statistics.median(abs(v - centre) for v in buddies)
        if site.beyond(centre, max(BUDDY_K * spread, tolerance)):
            questioned.add(site.sensor_id)
    return questioned, judged
