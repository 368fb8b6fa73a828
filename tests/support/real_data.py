"""Real sensor records (datasets/real.json, fetched by `make setup`) as readings of our schema.

Three stations, 1-minute sampling, read from their instruments' own file formats:
- BSRN Payerne (Switzerland), June 2016: air temperature (0.1 °C) and relative humidity
  (0.1 %), 43,200 minutes each; logical record LR0100, two lines per minute, the second ending
  with temperature, humidity and pressure.
- NOAA SURFRAD Alamosa (Colorado), 1 January 2016: temperature and relative humidity, 1,440
  minutes; fixed columns, each value followed by its QC flag.
- NREL MIDC (Colorado), 14 October 2018: temperature at 2 m, 1,440 minutes, in MST.

Missing values (-99.9, -9999.9) and values their own QC flags reject are left out, like a
station that does not send them. Event times are moved by whole days so that the last minute
falls just before `end` (the time of day is kept: a night stays a night).
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.workers import ROOT

DATASETS = ROOT / ".stack" / "datasets" / "pvlib-0.16.1"
MISSING = {-99.9, -999.0, -9999.0, -9999.9}


@dataclass(frozen=True)
class Observation:
    """One real measurement, before it becomes a reading."""

    station: str
    metric: str  # temperature | humidity
    at: datetime  # UTC
    value: float


@dataclass(frozen=True)
class Station:
    name: str
    lat: float
    lon: float


STATIONS = {
    "bsrn-payerne": Station("bsrn-payerne", 46.815, 6.944),
    "surfrad-alamosa": Station("surfrad-alamosa", 37.70, -105.92),
    "midc-golden": Station("midc-golden", 39.74, -105.18),
}


def available() -> bool:
    return all(
        (DATASETS / name).is_file()
        for name in ("bsrn-pay0616.dat.gz", "surfrad-slv16001.dat", "midc_20181014.txt")
    )


def _bsrn() -> Iterator[Observation]:
    with gzip.open(DATASETS / "bsrn-pay0616.dat.gz", "rt") as stream:
        lines = stream.read().splitlines()
    first = lines.index("*U0100") + 1
    last = next(i for i in range(first, len(lines)) if lines[i].startswith("*"))
    month = datetime(2016, 6, 1, tzinfo=UTC)
    block = lines[first:last]
    for head, tail in zip(block[0::2], block[1::2], strict=True):
        day, minute = (int(v) for v in head.split()[:2])
        at = month + timedelta(days=day - 1, minutes=minute)
        fields = tail.split()
        for metric, text in (("temperature", fields[-3]), ("humidity", fields[-2])):
            value = float(text)
            if value not in MISSING:
                yield Observation("bsrn-payerne", metric, at, value)


def _surfrad() -> Iterator[Observation]:
    rows = (DATASETS / "surfrad-slv16001.dat").read_text().splitlines()[2:]
    for row in rows:
        f = row.split()
        at = datetime(int(f[0]), int(f[2]), int(f[3]), int(f[4]), int(f[5]), tzinfo=UTC)
        # after the 8 time columns, each quantity is a value and its QC flag (0 = good)
        for metric, column in (("temperature", 38), ("humidity", 40)):
            value, flag = float(f[column]), int(f[column + 1])
            if flag == 0 and value not in MISSING:
                yield Observation("surfrad-alamosa", metric, at, value)


def _midc() -> Iterator[Observation]:
    with (DATASETS / "midc_20181014.txt").open(newline="") as stream:
        rows = list(csv.reader(stream))[1:]
    for row in rows:
        local = datetime.strptime(f"{row[0]} {row[1]}", "%m/%d/%Y %H:%M")
        at = local.replace(tzinfo=UTC) + timedelta(hours=7)  # MST is UTC-7
        value = float(row[4])
        if value not in MISSING:
            yield Observation("midc-golden", "temperature", at, value)


def observations() -> list[Observation]:
    """Every usable measurement of the three stations, ordered by station, metric and time."""
    found = [*_bsrn(), *_surfrad(), *_midc()]
    return sorted(found, key=lambda o: (o.station, o.metric, o.at))


def readings(end: datetime) -> list[dict[str, object]]:
    """The observations as readings of our schema, each station's series moved by whole days
    to end just before `end`."""
    out: list[dict[str, object]] = []
    series = observations()
    newest: dict[str, datetime] = {}
    for o in series:
        newest[o.station] = max(newest.get(o.station, o.at), o.at)
    for n, o in enumerate(series):
        shift = timedelta(days=(end - newest[o.station]).days)
        station = STATIONS[o.station]
        at = o.at + shift
        out.append(
            {
                "schema_version": 1,
                "event_id": f"{o.station}-{o.metric}-{at:%Y%m%d%H%M}",
                "sensor_id": f"{o.station}-{o.metric}",
                "station_id": o.station,
                "district": o.station,
                "metric": o.metric,
                "value": o.value,
                "unit": "°C" if o.metric == "temperature" else "%",
                "event_time": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "seq": n,
                "lat": station.lat,
                "lon": station.lon,
                "battery_pct": 100.0,
                "firmware": "real-1",
            }
        )
    return out


def dataset_path() -> Path:
    return DATASETS
