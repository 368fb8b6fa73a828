"""The sensor network: stations across Casablanca's districts, one sensor per metric."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from iot_pipeline.schema import METRICS


@dataclass(frozen=True)
class District:
    """A Casablanca district (arrondissement) with an approximate centre."""

    name: str
    slug: str
    lat: float
    lon: float
    coastal: bool
    industrial: bool


# Approximate centres; coastal districts get a milder climate, industrial ones more pollution.
DISTRICTS: tuple[District, ...] = (
    District("Anfa", "anfa", 33.5883, -7.6514, coastal=True, industrial=False),
    District("Sidi Belyout", "sidi-belyout", 33.5992, -7.6167, coastal=True, industrial=False),
    District("Maârif", "maarif", 33.5779, -7.6350, coastal=False, industrial=False),
    District("Mers Sultan", "mers-sultan", 33.5830, -7.6080, coastal=False, industrial=False),
    District("Hay Hassani", "hay-hassani", 33.5613, -7.6796, coastal=True, industrial=False),
    District("Aïn Chock", "ain-chock", 33.5410, -7.6140, coastal=False, industrial=False),
    District("Al Fida", "al-fida", 33.5640, -7.5970, coastal=False, industrial=False),
    District("Roches Noires", "roches-noires", 33.6000, -7.5720, coastal=True, industrial=True),
    District("Hay Mohammadi", "hay-mohammadi", 33.5880, -7.5560, coastal=False, industrial=True),
    District("Aïn Sebaâ", "ain-sebaa", 33.6070, -7.5360, coastal=True, industrial=True),
    District("Ben M'Sick", "ben-msick", 33.5560, -7.5780, coastal=False, industrial=False),
    District("Moulay Rachid", "moulay-rachid", 33.5650, -7.5380, coastal=False, industrial=False),
    District("Sidi Moumen", "sidi-moumen", 33.5800, -7.5100, coastal=False, industrial=True),
    District("Sidi Bernoussi", "sidi-bernoussi", 33.6080, -7.5000, coastal=True, industrial=True),
)

METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
FIRMWARES = ("2.3.1", "2.4.0", "3.0.2")
LEGACY_FIRMWARE = "1.8.7"


@dataclass(frozen=True)
class Network:
    """Every sensor of the network, as parallel arrays (index = sensor number)."""

    sensor_id: list[str]
    station_id: list[str]
    district: list[str]
    metric: list[str]
    unit: list[str]
    firmware: list[str]
    lat: np.ndarray
    lon: np.ndarray
    metric_index: np.ndarray  # position in METRIC_NAMES
    coastal: np.ndarray  # bool
    industrial: np.ndarray  # bool
    legacy_fahrenheit: np.ndarray  # bool: a legacy temperature sensor reporting °F
    # how coarsely it reports (COARSE_*): as fine as its metric allows, whole units, or
    # (temperature) whole degF converted to degC and written with one decimal
    coarse: np.ndarray
    noise_scale: np.ndarray  # per-sensor noise multiplier
    drift_per_day: np.ndarray  # slow calibration drift, in the metric's unit per day
    offset: np.ndarray  # per-sensor bias
    battery_phase: np.ndarray  # where in its charge cycle the station starts (0..1)
    phase_a: np.ndarray  # per-sensor phases for deterministic episodes (outages, stuck)
    phase_b: np.ndarray

    @property
    def size(self) -> int:
        return len(self.sensor_id)

    def select(self, sensors: Sequence[int]) -> Network:
        """The same network reduced to these sensors (by number), in that order."""
        picked = np.asarray(sensors, dtype=np.intp)
        columns: dict[str, object] = {}
        for spec in fields(self):
            column = getattr(self, spec.name)
            if isinstance(column, np.ndarray):
                columns[spec.name] = column[picked]
            else:
                columns[spec.name] = [column[i] for i in picked]
        return Network(**columns)  # type: ignore[arg-type]


FINE, WHOLE_UNITS, WHOLE_FAHRENHEIT = 0, 1, 2


def build_network(
    rng: np.random.Generator,
    stations_per_district: int = 2,
    legacy_fraction: float = 0.1,
    coarse_fraction: float = 0.0,
) -> Network:
    """Lay out stations in every district, one sensor per metric each; `coarse_fraction` of
    the sensors report coarsely (half of those temperature sensors in whole degF written as
    degC), chosen without drawing from `rng` (the rest of the network stays the same)."""
    if stations_per_district < 1:
        raise ValueError("stations_per_district must be at least 1")
    rows: list[tuple[District, str, float, float, str, str]] = []
    for district in DISTRICTS:
        for number in range(1, stations_per_district + 1):
            station = f"casa-{district.slug}-{number:02d}"
            # Stations scatter up to ~1.5 km around the district centre.
            lat = round(district.lat + float(rng.uniform(-0.012, 0.012)), 5)
            lon = round(district.lon + float(rng.uniform(-0.015, 0.015)), 5)
            firmware = str(rng.choice(FIRMWARES))
            for metric in METRIC_NAMES:
                rows.append((district, station, lat, lon, metric, firmware))
    n = len(rows)
    metric_index = np.array([METRIC_NAMES.index(r[4]) for r in rows])
    is_temperature = metric_index == METRIC_NAMES.index("temperature")
    legacy = is_temperature & (rng.random(n) < legacy_fraction)
    scale = np.array([_METRIC_SCALE[r[4]] for r in rows])
    draw = np.random.default_rng([n, 7]).random(n)  # its own stream: `rng` is left as it was
    # carbon monoxide (about 1 mg/m3) has no coarse sensors: in whole units it would be 0 or 1
    coarse_ones = (draw < coarse_fraction) & (metric_index != METRIC_NAMES.index("co"))
    coarse = np.where(coarse_ones, WHOLE_UNITS, FINE)
    fahrenheit = is_temperature & (draw < coarse_fraction / 2)
    coarse = np.where(fahrenheit, WHOLE_FAHRENHEIT, coarse)
    coarse = np.where(legacy, FINE, coarse)
    return Network(
        sensor_id=[f"{r[1]}-{r[4]}" for r in rows],
        station_id=[r[1] for r in rows],
        district=[r[0].name for r in rows],
        metric=[r[4] for r in rows],
        unit=["°F" if legacy[i] else METRICS[r[4]].unit for i, r in enumerate(rows)],
        firmware=[LEGACY_FIRMWARE if legacy[i] else r[5] for i, r in enumerate(rows)],
        lat=np.array([r[2] for r in rows]),
        lon=np.array([r[3] for r in rows]),
        metric_index=metric_index,
        coastal=np.array([r[0].coastal for r in rows]),
        industrial=np.array([r[0].industrial for r in rows]),
        legacy_fahrenheit=legacy,
        coarse=coarse,
        noise_scale=rng.uniform(0.6, 1.4, n),
        drift_per_day=rng.normal(0.0, 0.0002, n) * scale,
        offset=rng.normal(0.0, 0.03, n) * scale,
        battery_phase=rng.random(n),
        phase_a=rng.random(n),
        phase_b=rng.random(n),
    )


# Typical magnitude of each metric, used to size noise, drift and spikes.
_METRIC_SCALE = {
    "temperature": 5.0,
    "humidity": 15.0,
    "pm25": 12.0,
    "pm10": 25.0,
    "no2": 25.0,
    "o3": 30.0,
    "co": 0.5,
}
METRIC_SCALE = np.array([_METRIC_SCALE[m] for m in METRIC_NAMES])
