"""Real sensor records (datasets/real.json, fetched by `make setup`) as readings of our schema.

Six stations, read from their own file formats. Three sampled every minute:
- BSRN Payerne (Switzerland), June 2016: air temperature (0.1 °C) and relative humidity
  (0.1 %), 43,200 minutes each; logical record LR0100, two lines per minute, the second ending
  with temperature, humidity and pressure.
- NOAA SURFRAD Alamosa (Colorado), 1 January 2016: temperature and relative humidity, 1,440
  minutes; fixed columns, each value followed by its QC flag.
- NREL MIDC (Colorado), 14 October 2018: temperature at 2 m, 1,440 minutes, in MST.

Three sampled every hour by national weather networks, as typical-year files (each month a
real month of its own year; the file gives one year of hours, 8,760 per quantity):
- TMY3 Greensboro (North Carolina): temperature in whole degF written in degC with one decimal
  (a step of 0.56 degC), relative humidity in whole percent; only values measured (flag A).
- TMY3 Sand Point (Alaska), a maritime station: temperature in whole degC mostly, relative
  humidity in whole percent; only values measured (flag A), the rest filled by the file's
  makers are left out.
- IWEC Amsterdam Schiphol: temperature in 0.1 degC, relative humidity in whole percent.

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
    "tmy3-greensboro": Station("tmy3-greensboro", 36.1, -79.95),
    "tmy3-sand-point": Station("tmy3-sand-point", 55.317, -160.517),
    "iwec-amsterdam": Station("iwec-amsterdam", 52.3, 4.77),
}
FILES = (
    "bsrn-pay0616.dat.gz",
    "surfrad-slv16001.dat",
    "midc_20181014.txt",
    "723170TYA.CSV",
    "703165TY.csv",
    "NLD_Amsterdam062400_IWEC.epw",
)
YEAR = 2015  # typical-year files: their hours laid on one year without 29 February


def available() -> bool:
    return all((DATASETS / name).is_file() for name in FILES)


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


def _typical_hour(month: int, day: int, hour: int) -> datetime:
    """A typical-year file's hour ending (1..24, local standard time) on YEAR, in UTC."""
    return datetime(YEAR, month, day, tzinfo=UTC) + timedelta(hours=hour)


def _tmy3(name: str, station: str) -> Iterator[Observation]:
    with (DATASETS / name).open(newline="") as stream:
        rows = list(csv.reader(stream))
    utc_offset = float(rows[0][3])
    header = rows[1]
    columns = {"temperature": header.index("Dry-bulb (C)"), "humidity": header.index("RHum (%)")}
    for row in rows[2:]:
        month, day, _ = (int(v) for v in row[0].split("/"))
        hour = int(row[1].split(":")[0])
        at = _typical_hour(month, day, hour) - timedelta(hours=utc_offset)
        for metric, column in columns.items():
            value, source = float(row[column]), row[column + 1]
            if source == "A" and value not in MISSING:
                yield Observation(station, metric, at, value)


def _epw(name: str, station: str) -> Iterator[Observation]:
    with (DATASETS / name).open(newline="") as stream:
        rows = list(csv.reader(stream))
    utc_offset = float(rows[0][8])
    for row in rows[8:]:
        at = _typical_hour(int(row[1]), int(row[2]), int(row[3])) - timedelta(hours=utc_offset)
        for metric, column in (("temperature", 6), ("humidity", 8)):
            value = float(row[column])
            if value not in MISSING and value < 999:
                yield Observation(station, metric, at, value)


def observations() -> list[Observation]:
    """Every usable measurement of the six stations, ordered by station, metric and time."""
    found = [
        *_bsrn(),
        *_surfrad(),
        *_midc(),
        *_tmy3("723170TYA.CSV", "tmy3-greensboro"),
        *_tmy3("703165TY.csv", "tmy3-sand-point"),
        *_epw("NLD_Amsterdam062400_IWEC.epw", "iwec-amsterdam"),
    ]
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
