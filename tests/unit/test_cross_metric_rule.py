"""The cross-metric rule over a station's readings (pure logic)."""

from __future__ import annotations

from iot_pipeline.cleaning.cross_metric_rule import StationReading, cross_metric_violations
from iot_pipeline.vocabulary import CROSS_METRIC, SPIKE, UNIT_CONVERTED

T0 = 1_800_000_000.0  # a multiple of 5


def pm(
    event_id: str,
    metric: str,
    value: float,
    at: float = T0,
    station: str = "st-1",
    flags: tuple[str, ...] = (),
) -> StationReading:
    return StationReading(event_id, station, metric, at, value, flags)


def test_pm25_above_pm10_flags_both_halves() -> None:
    readings = [pm("a", "pm25", 80.0), pm("b", "pm10", 50.0)]
    assert cross_metric_violations(readings, 5.0) == {"a", "b"}


def test_pm25_at_or_below_pm10_is_fine() -> None:
    readings = [pm("a", "pm25", 50.0), pm("b", "pm10", 50.0), pm("c", "pm25", 10.0, T0 + 5)]
    readings.append(pm("d", "pm10", 22.0, T0 + 5))
    assert cross_metric_violations(readings, 5.0) == set()


def test_pairs_are_same_station_and_same_sample_slot() -> None:
    readings = [
        pm("a", "pm25", 80.0),
        pm("b", "pm10", 50.0, station="st-2"),  # another station
        pm("c", "pm10", 50.0, at=T0 + 5),  # next slot
        pm("d", "pm25", 80.0, at=T0 + 12),
        pm("e", "pm10", 50.0, at=T0 + 14.9),  # same slot [T0+10, T0+15)
    ]
    assert cross_metric_violations(readings, 5.0) == {"d", "e"}


def test_a_reading_invalid_for_another_reason_proves_nothing() -> None:
    readings = [pm("a", "pm25", 80.0), pm("b", "pm10", 5.0, flags=(SPIKE,))]
    assert cross_metric_violations(readings, 5.0) == set()


def test_its_own_flag_and_harmless_flags_do_not_hide_a_violation() -> None:
    readings = [
        pm("a", "pm25", 80.0, flags=(CROSS_METRIC,)),
        pm("b", "pm10", 50.0, flags=(UNIT_CONVERTED, CROSS_METRIC)),
    ]
    assert cross_metric_violations(readings, 5.0) == {"a", "b"}


def test_other_metrics_are_ignored() -> None:
    readings = [pm("a", "no2", 800.0), pm("b", "pm10", 50.0), pm("c", "o3", 900.0)]
    assert cross_metric_violations(readings, 5.0) == set()
