"""/aqi on aggregates the pipeline computed: readings a day long, processed for real, give the
AQI that the standard's equation gives on the same hourly means, computed offline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from iot_pipeline import aqi
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.api_process import start_api, stop_api
from support.isolation import own_pipeline
from support.kafka_io import produce_readings
from support.processing import process_pending
from support.readings import pm_reading, sample_reading

DISTRICT = "Sidi Belyout"
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "aqi") as own:
        yield own


def _reading(metric: str, unit: str, at: datetime, value: float, n: int) -> dict[str, object]:
    return sample_reading(
        event_id=f"{metric}-{n}",
        sensor_id=f"casa-sidi-belyout-01-{metric}",
        station_id="casa-sidi-belyout-01",
        district=DISTRICT,
        metric=metric,
        unit=unit,
        value=value,
        seq=n,
        event_time=at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    )


def test_the_aqi_of_an_hour_follows_the_standard_on_stored_aggregates(
    settings: Settings,
) -> None:
    last = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - HOUR
    readings, means = [], {"pm25": {}, "no2": {}}  # type: ignore[var-annotated]
    for i in range(24):  # two PM2.5 readings per hour for a day: their mean is the hour's
        hour = last - i * HOUR
        low, high = 30.0 + i, 40.0 + i
        readings += [
            _reading("pm25", "µg/m³", hour + timedelta(minutes=10), low, 2 * i),
            _reading("pm25", "µg/m³", hour + timedelta(minutes=40), high, 2 * i + 1),
        ]
        means["pm25"][int(hour.timestamp())] = (low + high) / 2
    readings.append(_reading("no2", "µg/m³", last + timedelta(minutes=5), 300.0, 0))
    means["no2"][int(last.timestamp())] = 300.0
    produce_readings(settings, readings)
    process_pending(settings, "aqi")
    store = make_store(settings)
    store.refresh(f"{settings.search_index_prefix}-agg-*")  # searchable now, not in 5 s
    store.close()

    expected = aqi.hour_aqi(means, int(last.timestamp()))
    # by hand: PM2.5 24 h mean = 35 + 11.5 = 46.5 -> 49/19.9 * 11.0 + 101 = 128.1 -> 128;
    # NO2 300 µg/m³ = 159.4 ppb -> truncated 159 -> 49/259 * 58 + 101 = 112.0 -> 112
    assert (expected.aqi, expected.dominant) == (128, "pm25")
    process, url = start_api(settings)
    try:
        answer = httpx.get(
            f"{url}/aqi",
            params={
                "district": DISTRICT,
                "start": last.isoformat(),
                "end": (last + HOUR).isoformat(),
            },
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        (hour,) = answer.json()["items"]
        assert (hour["aqi"], hour["dominant"], hour["category"]) == (
            128,
            "pm25",
            "Unhealthy for Sensitive Groups",
        )
        subs = {s["metric"]: s for s in hour["sub_indices"]}
        assert (subs["pm25"]["index"], subs["pm25"]["averaging_hours"]) == (128, 24)
        assert subs["pm25"]["concentration"] == pytest.approx(46.5)
        assert subs["no2"]["index"] == 112
        too_long = httpx.get(
            f"{url}/aqi", params={"start": (last - 100 * HOUR).isoformat()}, timeout=30
        )
        assert too_long.status_code == 422
    finally:
        stop_api(process)


def _station_reading(station: str, at: datetime, value: float, n: int) -> dict[str, object]:
    return pm_reading(station, "pm25", value, at, n, district="Anfa", event_id=f"{station}-{n}")


def test_each_station_has_its_own_aqi_and_the_district_pools_them(settings: Settings) -> None:
    last = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - HOUR
    levels = {"casa-anfa-01": 80.0, "casa-anfa-02": 8.0}  # a busy road and a park
    produce_readings(
        settings,
        [
            _station_reading(station, last - i * HOUR + timedelta(minutes=20), level, i)
            for station, level in levels.items()
            for i in range(24)
        ],
    )
    process_pending(settings, "aqi-stations")
    store = make_store(settings)
    store.refresh(f"{settings.search_index_prefix}-*")
    store.close()
    hour = int(last.timestamp())
    day = range(hour - 23 * aqi.HOUR, hour + 1, aqi.HOUR)
    expected = {
        s: aqi.hour_aqi({"pm25": dict.fromkeys(day, v)}, hour).aqi for s, v in levels.items()
    }
    pooled = aqi.hour_aqi({"pm25": dict.fromkeys(day, 44.0)}, hour).aqi
    assert expected["casa-anfa-01"] != pooled != expected["casa-anfa-02"]
    process, url = start_api(settings)
    try:
        window = {"start": last.isoformat(), "end": (last + HOUR).isoformat()}
        stations = httpx.get(
            f"{url}/aqi", params={"scope": "station", "district": "Anfa", **window}, timeout=30
        ).json()
        assert stations["scope"] == "station"
        assert {h["station"]: h["aqi"] for h in stations["items"]} == expected
        assert {h["district"] for h in stations["items"]} == {"Anfa"}
        one = httpx.get(
            f"{url}/aqi",
            params={"scope": "station", "station": "casa-anfa-02", **window},
            timeout=30,
        ).json()["items"]
        assert [(h["station"], h["aqi"]) for h in one] == [
            ("casa-anfa-02", expected["casa-anfa-02"])
        ]
        (district,) = httpx.get(
            f"{url}/aqi", params={"district": "Anfa", **window}, timeout=30
        ).json()["items"]
        assert (district["station"], district["aqi"]) == (None, pooled)
        refused = httpx.get(f"{url}/aqi", params={"station": "casa-anfa-01"}, timeout=30)
        assert refused.status_code == 422
    finally:
        stop_api(process)
