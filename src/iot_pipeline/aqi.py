"""The US EPA Air Quality Index (AQI), hour by hour, from the pipeline's hourly aggregates.

The definition is the EPA's *Technical Assistance Document for the Reporting of Daily Air
Quality - the Air Quality Index (AQI)*, EPA-454/B-24-002 (May 2024), Table 6 "Breakpoints
for the AQI" (which includes the 2024 PM2.5 revision), and 40 CFR Part 58 Appendix G:

- each pollutant's concentration, averaged over its own period and truncated as the table
  states, is placed between the breakpoints [BP_lo, BP_hi] of its category, and its sub-index
  is the linear interpolation I = (I_hi - I_lo) / (BP_hi - BP_lo) * (C - BP_lo) + I_lo,
  rounded to the nearest integer;
- the AQI is the highest sub-index, and that pollutant is the dominant one.

Averaging periods (the table's): PM2.5 and PM10 24 hours, O3 8 hours (the 1-hour table is used
too from 0.125 ppm, and the higher of the two is reported), CO 8 hours, NO2 1 hour. An
average needs 75% of its hours (18 of 24, 6 of 8); otherwise that sub-index is not computed.
Our gases are stored in µg/m³ (CO in mg/m³); the table is in ppb/ppm, so they are converted
at 25 °C and 1 atm (molar volume 24.45 L): ppb = µg/m³ x 24.45 / molecular weight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Final

HOUR = 3600
MOLAR_VOLUME = 24.45  # litres per mole at 25 °C and 1 atm
MOLECULAR_WEIGHT: Final = {"no2": 46.0055, "o3": 47.9982, "co": 28.0101}

# (name, colour as the TAD's Table 2 gives it (RGB), index low, index high)
CATEGORIES: Final = (
    ("Good", "#00e400", 0, 50),
    ("Moderate", "#ffff00", 51, 100),
    ("Unhealthy for Sensitive Groups", "#ff7e00", 101, 150),
    ("Unhealthy", "#ff0000", 151, 200),
    ("Very Unhealthy", "#8f3f97", 201, 300),
    ("Hazardous", "#7e0023", 301, 500),
)


@dataclass(frozen=True)
class Table:
    """One pollutant's breakpoints: (BP_lo, BP_hi, I_lo, I_hi) rows, in the table's unit."""

    unit: str
    hours: int  # the averaging period
    decimals: int  # the concentration is truncated to this many decimals
    rows: tuple[tuple[str, str, int, int], ...]
    # beyond the last row: the table's top index, or nothing (8-hour O3 says nothing above
    # 300; the 1-hour table does)
    capped: bool = True

    def index(self, concentration: float) -> int | None:
        """The sub-index; 500 beyond the last breakpoint ("beyond the AQI", reported as its
        top); None for no usable value or below the table's first row."""
        if math.isnan(concentration) or concentration < 0:
            return None
        step = Decimal(1).scaleb(-self.decimals)
        c = Decimal(repr(concentration)).quantize(step, rounding=ROUND_DOWN)
        for low, high, i_low, i_high in self.rows:
            bp_lo, bp_hi = Decimal(low), Decimal(high)
            if bp_lo <= c <= bp_hi:
                value = (Decimal(i_high - i_low) / (bp_hi - bp_lo)) * (c - bp_lo) + i_low
                return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        if self.capped and c > Decimal(self.rows[-1][1]):
            return self.rows[-1][3]
        return None


# EPA-454/B-24-002, Table 6.
TABLES: Final = {
    "pm25": Table(
        "µg/m³",
        24,
        1,
        (
            ("0.0", "9.0", 0, 50),
            ("9.1", "35.4", 51, 100),
            ("35.5", "55.4", 101, 150),
            ("55.5", "125.4", 151, 200),
            ("125.5", "225.4", 201, 300),
            ("225.5", "325.4", 301, 500),
        ),
    ),
    "pm10": Table(
        "µg/m³",
        24,
        0,
        (
            ("0", "54", 0, 50),
            ("55", "154", 51, 100),
            ("155", "254", 101, 150),
            ("255", "354", 151, 200),
            ("355", "424", 201, 300),
            ("425", "604", 301, 500),
        ),
    ),
    "o3": Table(
        "ppm",
        8,
        3,
        (
            ("0.000", "0.054", 0, 50),
            ("0.055", "0.070", 51, 100),
            ("0.071", "0.085", 101, 150),
            ("0.086", "0.105", 151, 200),
            ("0.106", "0.200", 201, 300),
        ),
        capped=False,
    ),
    "co": Table(
        "ppm",
        8,
        1,
        (
            ("0.0", "4.4", 0, 50),
            ("4.5", "9.4", 51, 100),
            ("9.5", "12.4", 101, 150),
            ("12.5", "15.4", 151, 200),
            ("15.5", "30.4", 201, 300),
            ("30.5", "50.4", 301, 500),
        ),
    ),
    "no2": Table(
        "ppb",
        1,
        0,
        (
            ("0", "53", 0, 50),
            ("54", "100", 51, 100),
            ("101", "360", 101, 150),
            ("361", "649", 151, 200),
            ("650", "1249", 201, 300),
            ("1250", "2049", 301, 500),
        ),
    ),
}
# O3 1-hour: from 0.125 ppm (an 8-hour value cannot say more than 300).
O3_ONE_HOUR: Final = Table(
    "ppm",
    1,
    3,
    (
        ("0.125", "0.164", 101, 150),
        ("0.165", "0.204", 151, 200),
        ("0.205", "0.404", 201, 300),
        ("0.405", "0.604", 301, 500),
    ),
)
POLLUTANTS: Final = tuple(TABLES)
MIN_COVERAGE = 0.75  # share of an averaging period's hours that must have data


def to_table_unit(metric: str, stored: float) -> float:
    """A concentration in the pipeline's unit (µg/m³; CO mg/m³) in the table's (ppb/ppm)."""
    if metric in ("pm25", "pm10"):
        return stored
    ppb = stored * MOLAR_VOLUME / MOLECULAR_WEIGHT[metric]  # mg/m³ -> ppm works the same way
    return ppb / 1000 if metric == "o3" else ppb


def category(index: int) -> tuple[str, str]:
    """The category name and colour of an AQI value."""
    for name, colour, low, high in CATEGORIES:
        if low <= index <= high:
            return name, colour
    return CATEGORIES[-1][0], CATEGORIES[-1][1]


@dataclass(frozen=True)
class SubIndex:
    metric: str
    concentration: float  # averaged over `hours`, in `unit`
    unit: str
    hours: int
    index: int


@dataclass(frozen=True)
class HourAqi:
    """The AQI of one place for the hour starting at `hour` (epoch seconds)."""

    hour: int
    aqi: int | None
    dominant: str | None
    sub_indices: tuple[SubIndex, ...]

    @property
    def category(self) -> tuple[str, str] | None:
        return category(self.aqi) if self.aqi is not None else None


def _average(hourly: Mapping[int, float], hour: int, hours: int) -> float | None:
    """The mean of the hourly means ending with `hour`, if enough of them exist."""
    values = [hourly[h] for h in range(hour - (hours - 1) * HOUR, hour + 1, HOUR) if h in hourly]
    if len(values) < math.ceil(MIN_COVERAGE * hours):
        return None
    return sum(values) / len(values)


def hour_aqi(hourly: Mapping[str, Mapping[int, float]], hour: int) -> HourAqi:
    """The AQI for `hour` from each pollutant's hourly means (metric -> hour start -> mean in
    the pipeline's unit), over the hours before it as each averaging period needs."""
    subs: list[SubIndex] = []
    for metric, table in TABLES.items():
        means = hourly.get(metric, {})
        average = _average(means, hour, table.hours)
        if average is None:
            continue
        concentration, hours = to_table_unit(metric, average), table.hours
        index = table.index(concentration)
        if metric == "o3" and hour in means:  # the 1-hour table, where it says more
            one_hour = to_table_unit(metric, means[hour])
            higher = O3_ONE_HOUR.index(one_hour)
            if higher is not None and (index is None or higher > index):
                index, concentration, hours = higher, one_hour, 1
        if index is not None:
            subs.append(SubIndex(metric, round(concentration, 4), table.unit, hours, index))
    if not subs:
        return HourAqi(hour, None, None, ())
    top = max(subs, key=lambda s: s.index)
    return HourAqi(hour, top.index, top.metric, tuple(subs))
