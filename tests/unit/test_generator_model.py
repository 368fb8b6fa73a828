"""The simulator's physical model: cycles, correlations and ranges a city would show."""

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from iot_pipeline.generator.faults import FaultRates
from iot_pipeline.generator.network import (
    DISTRICTS,
    FINE,
    METRIC_NAMES,
    WHOLE_FAHRENHEIT,
    WHOLE_UNITS,
    build_network,
)
from iot_pipeline.generator.signals import battery_levels, expected_values, noisy_values
from iot_pipeline.generator.stream import ReadingStream
from iot_pipeline.schema import METRICS


@pytest.fixture(scope="module")
def network():  # type: ignore[no-untyped-def]
    return build_network(np.random.default_rng(3), stations_per_district=2, legacy_fraction=0.0)


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _column(network, metric: str, values: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return values[:, network.metric_index == METRIC_NAMES.index(metric)]


def test_layout_covers_every_district_and_metric(network) -> None:  # type: ignore[no-untyped-def]
    assert network.size == len(DISTRICTS) * 2 * len(METRIC_NAMES)
    assert len(set(network.sensor_id)) == network.size
    assert {d.name for d in DISTRICTS} == set(network.district)
    assert np.all((network.lat > 33.45) & (network.lat < 33.70))
    assert np.all((network.lon > -7.80) & (network.lon < -7.40))


def test_weekday_rush_hour_raises_no2(network) -> None:  # type: ignore[no-untyped-def]
    # 2026-11-25 is a Wednesday, 2026-11-29 a Sunday; 07:00 UTC is 08:00 in Casablanca.
    times = np.array([_utc("2026-11-25T07:00"), _utc("2026-11-25T02:00"), _utc("2026-11-29T07:00")])
    no2 = _column(network, "no2", expected_values(network, times)).mean(axis=1)
    rush, night, sunday_rush = no2
    assert rush > night + 20
    assert rush > sunday_rush + 15


def test_temperature_daily_cycle_is_milder_on_the_coast(network) -> None:  # type: ignore[no-untyped-def]
    day = _utc("2026-07-15T00:00") + np.arange(0, 86400, 600, dtype=float)
    temperature = _column(network, "temperature", expected_values(network, day))
    coastal = network.coastal[network.metric_index == 0]
    swing = temperature.max(axis=0) - temperature.min(axis=0)
    assert swing[coastal].mean() < swing[~coastal].mean()
    peak_hour_utc = (np.argmax(temperature.mean(axis=1)) * 600 / 3600) % 24
    assert 12 <= peak_hour_utc <= 16
    summer = temperature.mean()
    winter = _column(network, "temperature", expected_values(network, day - 180 * 86400)).mean()
    assert summer > winter + 5


def test_humidity_moves_against_temperature(network) -> None:  # type: ignore[no-untyped-def]
    times = _utc("2026-04-01T00:00") + np.arange(0, 3 * 86400, 900, dtype=float)
    values = expected_values(network, times)
    t = _column(network, "temperature", values).mean(axis=1)
    h = _column(network, "humidity", values).mean(axis=1)
    assert np.corrcoef(t, h)[0, 1] < -0.8


def test_noisy_values_stay_physical_and_pm25_below_pm10(network) -> None:  # type: ignore[no-untyped-def]
    times = _utc("2026-11-01T00:00") + np.arange(0, 7 * 86400, 1800, dtype=float)
    values, _ = noisy_values(network, times, np.random.default_rng(0))
    for metric, spec in METRICS.items():
        column = _column(network, metric, values)
        assert column.min() >= spec.minimum, metric
        assert column.max() <= spec.maximum, metric
    pm25 = _column(network, "pm25", values).mean(axis=0)
    pm10 = _column(network, "pm10", values).mean(axis=0)
    assert np.all(pm25 < pm10)


def test_battery_levels_are_percentages(network) -> None:  # type: ignore[no-untyped-def]
    levels = battery_levels(network, np.arange(0, 86400 * 3, 3600, dtype=float))
    assert levels.min() >= 0
    assert levels.max() <= 100
    assert levels.std() > 5


def test_coarse_sensors_report_whole_units_or_whole_fahrenheit() -> None:
    fine = build_network(np.random.default_rng(3), legacy_fraction=0.0)
    coarse = build_network(np.random.default_rng(3), legacy_fraction=0.0, coarse_fraction=0.5)
    # the rest of the network is the same network
    assert np.array_equal(fine.noise_scale, coarse.noise_scale)
    assert not fine.coarse.any()
    stream = ReadingStream(coarse, FaultRates.none(), 3, 3600.0, _utc("2026-11-01T00:00"))
    values: dict[str, list[float]] = {}
    for batch in stream.rounds(_utc("2026-11-01T00:00") + 3600.0 * np.arange(48), 0.0):
        for raw in batch.values:
            reading = json.loads(raw)
            values.setdefault(reading["sensor_id"], []).append(reading["value"])
    kinds = dict(zip(coarse.sensor_id, coarse.coarse, strict=True))
    assert {int(k) for k in kinds.values()} == {FINE, WHOLE_UNITS, WHOLE_FAHRENHEIT}
    for sensor, seen in values.items():
        if kinds[sensor] == WHOLE_UNITS:
            assert all(v == round(v) for v in seen), sensor
        elif kinds[sensor] == WHOLE_FAHRENHEIT:
            fahrenheit = [v * 1.8 + 32 for v in seen]
            assert all(abs(f - round(f)) <= 0.09 for f in fahrenheit), sensor
        else:
            assert any(v != round(v, 1) for v in seen), sensor
    assert all(kinds[s] == FINE for s in values if s.endswith("-co"))
