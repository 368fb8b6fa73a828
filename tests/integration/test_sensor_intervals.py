"""Completeness at each sensor's own sampling interval: an hourly station and a station read
every minute in one district. Each window expects what its sensors' intervals make due, as
their readings show them; the registry and the API say what was learned."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from iot_pipeline.settings import Settings
from iot_pipeline.storage import SearchStore

from support.aggregates import window
from support.api_process import start_api, stop_api
from support.isolation import own_pipeline
from support.kafka_io import produce_readings
from support.processing import process_pending
from support.readings import sample_reading

# the hour that began 30 hours ago: whole hours and a whole day behind us
HOUR0 = (datetime.now(UTC) - timedelta(hours=30)).replace(minute=0, second=0, microsecond=0)
DISTRICT = "Intervals"


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "intervals") as own:
        yield own


def _series(station: str, every: timedelta, count: int) -> list[dict[str, Any]]:
    sensor = f"{station}-temperature"
    return [
        sample_reading(
            event_id=f"{sensor}-{n}",
            sensor_id=sensor,
            station_id=station,
            district=DISTRICT,
            value=round(18.0 + 0.37 * (n % 7), 2),
            seq=n,
            event_time=(HOUR0 + every * n).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        )
        for n in range(count)
    ]


def test_each_window_expects_readings_at_its_sensors_own_intervals(
    settings: Settings, store: SearchStore
) -> None:
    hourly = _series("casa-iv-hourly", timedelta(hours=1), 6)
    # a reading a minute for five hours, with one in ten missing
    minutely = [
        r for n, r in enumerate(_series("casa-iv-minute", timedelta(minutes=1), 300)) if n % 10 != 5
    ]
    produce_readings(settings, [*hourly, *minutely])
    process_pending(settings, "intervals-1")

    # even the first hour, before the cleaner knew the interval (the registry did by then)
    for hour in (HOUR0, HOUR0 + timedelta(hours=3)):
        sensor = window(store, settings, "1h", "sensor", "casa-iv-hourly-temperature", hour)
        assert (sensor["count"], sensor["expected"], sensor["completeness"]) == (1, 1.0, 1.0)
        assert sensor["intervals"] == [3600.0]
        minute = window(store, settings, "1h", "sensor", "casa-iv-minute-temperature", hour)
        assert (minute["count"], minute["expected"], minute["completeness"]) == (54, 60.0, 0.9)
    district = window(store, settings, "1h", "district", DISTRICT, HOUR0 + timedelta(hours=1))
    assert district["sensor_ids"] == ["casa-iv-hourly-temperature", "casa-iv-minute-temperature"]
    assert district["intervals"] == [3600.0, 60.0]
    assert district["expected"] == pytest.approx(61.0)
    assert district["completeness"] == pytest.approx(55 / 61, abs=1e-6)
    # a day expects 24 readings of an hourly sensor, not 17,280 of one every 5 s
    day = HOUR0.replace(hour=0)
    daily = window(store, settings, "1d", "sensor", "casa-iv-hourly-temperature", day)
    assert daily["expected"] == pytest.approx(24.0)


def test_the_registry_and_the_api_say_what_was_learned(settings: Settings) -> None:
    process, url = start_api(settings)
    try:
        sensors = httpx.get(f"{url}/sensors", params={"district": DISTRICT}, timeout=10).json()
    finally:
        stop_api(process)
    learned = {s["sensor_id"]: (s["interval_s"], s["resolution"]) for s in sensors["items"]}
    assert learned == {
        "casa-iv-hourly-temperature": (3600.0, 0.01),
        "casa-iv-minute-temperature": (60.0, 0.01),
    }
