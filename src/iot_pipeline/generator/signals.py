"""The physical model: what each sensor would read at a time, vectorised over rounds.

Casablanca has a mild Atlantic climate: coastal stations swing less than inland ones.
Temperature peaks mid-afternoon and in August; humidity moves against temperature; NO2, CO
and particulates peak with weekday rush hours (08:00 and 18:30 local time, UTC+1); ozone
builds up with afternoon sun and is eaten by NO2.
"""

from __future__ import annotations

import numpy as np

from iot_pipeline.generator.network import METRIC_NAMES, METRIC_SCALE, Network

LOCAL_UTC_OFFSET_HOURS = 1.0
DRIFT_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: drift is measured from here
NOISE_FRACTION = 0.06  # noise standard deviation as a fraction of the metric's scale

_T, _H, _PM25, _PM10, _NO2, _O3, _CO = (METRIC_NAMES.index(m) for m in METRIC_NAMES)


def _rush(hour: np.ndarray) -> np.ndarray:
    morning = np.exp(-((hour - 8.0) ** 2) / (2 * 1.2**2))
    evening = 0.9 * np.exp(-((hour - 18.5) ** 2) / (2 * 1.5**2))
    return np.asarray(morning + evening)


def expected_values(network: Network, times: np.ndarray) -> np.ndarray:
    """Noise-free readings, shape (len(times), sensors), in canonical units."""
    t = np.asarray(times, dtype=np.float64)[:, None]
    local = t + LOCAL_UTC_OFFSET_HOURS * 3600.0
    hour = (local % 86400.0) / 3600.0
    weekday = ((np.floor(local / 86400.0) + 3) % 7) < 5  # 1970-01-01 was a Thursday
    day_of_year = (t / 86400.0) % 365.25
    coastal = network.coastal[None, :]
    industrial = network.industrial[None, :].astype(np.float64)

    season = np.cos(2 * np.pi * (day_of_year - 220.0) / 365.25)
    daily = np.cos(2 * np.pi * (hour - 15.0) / 24.0)
    temperature = 18.5 + np.where(coastal, 4.0, 6.0) * season + np.where(coastal, 3.0, 5.5) * daily
    humidity = np.clip(
        np.where(coastal, 78.0, 70.0) - 2.2 * (temperature - 18.5 - 5.0 * season), 15.0, 94.0
    )
    traffic = np.where(weekday, 1.0, 0.35) * _rush(hour)
    no2 = 18.0 + 38.0 * traffic + 12.0 * industrial
    pm10 = 28.0 + 22.0 * traffic + 15.0 * industrial + np.where(coastal, 4.0, 0.0)
    pm25 = 0.45 * pm10
    sun = np.clip(np.cos(2 * np.pi * (hour - 14.0) / 24.0), 0.0, None)
    o3 = np.clip(45.0 + 35.0 * sun - 0.35 * (no2 - 18.0), 10.0, None)
    co = 0.35 + 0.7 * traffic + 0.15 * industrial

    by_metric = np.stack(
        np.broadcast_arrays(temperature, humidity, pm25, pm10, no2, o3, co), axis=0
    )
    rounds = np.arange(by_metric.shape[1])[:, None]
    base = by_metric[network.metric_index[None, :], rounds, np.arange(network.size)[None, :]]
    drift = network.drift_per_day[None, :] * (t - DRIFT_EPOCH) / 86400.0
    return np.asarray(base + network.offset[None, :] + drift)


def noisy_values(
    network: Network, times: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(readings with sensor noise, noise-free readings), clipped to what sensors can report."""
    expected = expected_values(network, times)
    sd = NOISE_FRACTION * METRIC_SCALE[network.metric_index] * network.noise_scale
    values = expected + rng.standard_normal(expected.shape) * sd[None, :]
    humidity = network.metric_index == _H
    values[:, humidity] = np.clip(values[:, humidity], 1.0, 100.0)
    pollutant = network.metric_index >= _PM25
    values[:, pollutant] = np.clip(values[:, pollutant], 0.0, None)
    return values, expected


def battery_levels(network: Network, times: np.ndarray) -> np.ndarray:
    """Solar-charged stations: charge follows the day, each with its own phase."""
    t = np.asarray(times, dtype=np.float64)[:, None]
    cycle = np.sin(2 * np.pi * (t / 86400.0 + network.battery_phase[None, :]))
    return np.asarray(np.clip(62.0 + 33.0 * cycle, 5.0, 100.0))


def unit_hash(hours: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """A deterministic uniform number in [0, 1) per (hour, sensor): for episodes."""
    h = hours.astype(np.uint64)[:, None]
    salt = (phase * 2**32).astype(np.uint64)[None, :]
    x = (h * np.uint64(0x9E3779B97F4A7C15)) ^ (salt * np.uint64(0xBF58476D1CE4E5B9))
    x ^= x >> np.uint64(31)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(29)
    return np.asarray((x >> np.uint64(11)).astype(np.float64) / float(2**53))
