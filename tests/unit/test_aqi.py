"""The EPA AQI against its published table (EPA-454/B-24-002, Table 6) and the TAD's way of
computing it: every breakpoint maps to its category's edges, truncation, the equation, the
dominant pollutant, averaging periods and coverage, and the units our gases are stored in."""

from __future__ import annotations

import pytest

from iot_pipeline.aqi import (
    HOUR,
    O3_ONE_HOUR,
    TABLES,
    category,
    hour_aqi,
    to_table_unit,
)


@pytest.mark.parametrize("metric", sorted(TABLES))
def test_every_breakpoint_gives_its_categorys_edges(metric: str) -> None:
    table = TABLES[metric]
    for low, high, i_low, i_high in table.rows:
        assert table.index(float(low)) == i_low, (metric, low)
        assert table.index(float(high)) == i_high, (metric, high)
    # the rows leave no gap at the table's precision
    step = 10.0**-table.decimals
    for (_, high, _, _), (low, _, _, _) in zip(table.rows, table.rows[1:], strict=False):
        assert float(low) == pytest.approx(float(high) + step)


@pytest.mark.parametrize(
    ("metric", "concentration", "expected"),
    [
        # the equation: (I_hi - I_lo) / (BP_hi - BP_lo) * (C - BP_lo) + I_lo, rounded
        ("pm25", 35.9, 102),  # 49 / 19.9 * 0.4 + 101 = 101.98
        ("pm25", 12.0, 56),  # 49 / 26.3 * 2.9 + 51 = 56.40
        ("o3", 0.078, 126),  # 8-hour: 49 / 0.014 * 0.007 + 101 = 125.5
        ("co", 6.0, 66),  # 49 / 4.9 * 1.5 + 51 = 66.0
        ("no2", 75.0, 73),  # 49 / 46 * 21 + 51 = 73.37
        ("pm10", 160.0, 103),  # 49 / 99 * 5 + 101 = 103.47
        # truncation before lookup: 9.05 is 9.0 (Good), 54.9 PM10 is 54
        ("pm25", 9.05, 50),
        ("pm10", 54.9, 50),
        # beyond the last breakpoint: reported at the top of the scale
        ("pm25", 600.0, 500),
    ],
)
def test_the_equation_and_truncation(metric: str, concentration: float, expected: int) -> None:
    assert TABLES[metric].index(concentration) == expected


def test_eight_hour_ozone_says_nothing_above_300_the_one_hour_table_does() -> None:
    assert TABLES["o3"].index(0.25) is None
    assert O3_ONE_HOUR.index(0.45) == 346  # 199 / 0.199 * 0.045 + 301
    assert O3_ONE_HOUR.index(0.405) == 301
    assert O3_ONE_HOUR.index(0.1) is None  # below 0.125 ppm the 1-hour table is not used


def test_categories_and_colours() -> None:
    assert category(50) == ("Good", "#00e400")
    assert category(51)[0] == "Moderate"
    assert category(150)[0] == "Unhealthy for Sensitive Groups"
    assert category(301) == ("Hazardous", "#7e0023")


def test_gases_are_converted_from_what_the_pipeline_stores() -> None:
    assert to_table_unit("no2", 188.0) == pytest.approx(99.9, abs=0.1)  # µg/m³ -> ppb
    assert to_table_unit("o3", 137.0) == pytest.approx(0.0698, abs=0.0001)  # µg/m³ -> ppm
    assert to_table_unit("co", 10.3) == pytest.approx(8.99, abs=0.01)  # mg/m³ -> ppm
    assert to_table_unit("pm25", 12.3) == 12.3


def test_an_hour_takes_each_pollutants_own_period_and_the_highest_wins() -> None:
    hour = 100 * 24 * HOUR
    hours = [hour - i * HOUR for i in range(24)]
    hourly = {
        "pm25": dict.fromkeys(hours, 12.0),  # 24-hour mean 12.0 -> 56
        "no2": {hour: 188.0},  # this hour: 99.9 ppb -> 99 (truncated to 99 ppb)
        "co": dict.fromkeys(hours[:5], 1.0),  # 5 of 8 hours: below 75% coverage, no index
    }
    result = hour_aqi(hourly, hour)
    subs = {s.metric: s for s in result.sub_indices}
    assert set(subs) == {"pm25", "no2"}
    assert (subs["pm25"].index, subs["pm25"].hours) == (56, 24)
    assert subs["no2"].index == 99
    assert (result.aqi, result.dominant) == (99, "no2")
    assert result.category == ("Moderate", "#ffff00")


def test_coverage_of_a_24_hour_average_needs_18_hours() -> None:
    hour = 200 * 24 * HOUR
    seventeen = {"pm25": {hour - i * HOUR: 20.0 for i in range(17)}}
    eighteen = {"pm25": {hour - i * HOUR: 20.0 for i in range(18)}}
    assert hour_aqi(seventeen, hour).aqi is None
    assert hour_aqi(eighteen, hour).aqi == 71  # 49 / 26.3 * 10.9 + 51 = 71.31


def test_nothing_measured_is_no_index() -> None:
    assert hour_aqi({}, 0).aqi is None
