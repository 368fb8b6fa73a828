"""Sensor metadata declared by an operator, on the real stack: declared through the real API
process, applied by the real range processing to the readings cleaned after it (the
calibration offset, the active period, the expected interval), shown by /sensors, and
removed again. A sensor declared before its first reading breaks no reader of the
registry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from iot_pipeline.aggregation import recompute_windows
from iot_pipeline.aggregation.windows import windows_of
from iot_pipeline.indices import sensors_index
from iot_pipeline.settings import Settings
from iot_pipeline.storage import SearchStore

from support.aggregates import window
from support.api_process import api_client, start_api, stop_api
from support.clock import event_stamp
from support.ground_truth import assert_aggregates_match, snapshot
from support.isolation import own_pipeline
from support.kafka_io import produce_readings
from support.processing import process_pending
from support.readings import sample_reading

KEY = "metadata-test-key"
AUTH = {"X-API-Key": KEY}
# the hour that began 30 hours ago: whole hours behind us
HOUR0 = (datetime.now(UTC) - timedelta(hours=30)).replace(minute=0, second=0, microsecond=0)
DISTRICT = "Declared"
CALIBRATED = "casa-md-01-temperature"  # hourly; offset -0.5, active [hour 1, hour 3)
FAST = "casa-md-02-temperature"  # every 10 minutes, declared every 5
LATE = "casa-md-03-temperature"  # declared only after its readings were stored
GHOST = "casa-md-09-temperature"  # declared, never sends a reading
OFFSET = -0.5


def _reading(sensor: str, n: int, at: datetime, value: float) -> dict[str, Any]:
    station = sensor.removesuffix("-temperature")
    return sample_reading(
        event_id=f"{station}-{n}",
        sensor_id=sensor,
        station_id=station,
        district=DISTRICT,
        seq=n,
        value=value,
        event_time=event_stamp(at),
    )


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "metadata") as own:
        yield own


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[httpx.Client]:
    with api_client(settings, API_KEY=KEY) as client:
        yield client


def _declare(api: httpx.Client, sensor: str, **body: Any) -> dict[str, Any]:
    response = api.put(f"/sensors/{sensor}/metadata", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    declared: dict[str, Any] = response.json()
    return declared


@pytest.fixture(scope="module")
def declared(api: httpx.Client) -> None:
    """Declarations made before any reading of their sensors."""
    _declare(
        api,
        CALIBRATED,
        metric="temperature",
        interval_s=3600,
        calibration_offset=OFFSET,
        active_from=event_stamp(HOUR0 + timedelta(hours=1)),
        active_to=event_stamp(HOUR0 + timedelta(hours=3)),
        note="recalibrated; in service for two hours",
    )
    _declare(api, FAST, interval_s=300)
    _declare(api, GHOST, interval_s=60, note="installed, not wired yet")


@pytest.fixture(scope="module")
def stored(settings: Settings, store: SearchStore, declared: None) -> None:
    """Readings of the declared sensors and of one not declared yet, processed."""
    calibrated = [
        _reading(CALIBRATED, n, HOUR0 + timedelta(hours=n, minutes=10), 20.3 + 0.3 * n)
        for n in range(5)
    ]
    fast = [
        _reading(FAST, n, HOUR0 + timedelta(minutes=10 * n), 21.0 + 0.1 * (n % 3))
        for n in range(12)
    ]
    late = [_reading(LATE, n, HOUR0 + timedelta(minutes=n), 19.0 + 0.1 * n) for n in range(3)]
    produce_readings(settings, [*calibrated, *fast, *late])
    process_pending(settings, "metadata-1")
    store.refresh(sensors_index(settings.search_index_prefix))  # the registry, for the API


def _readings(store: SearchStore, settings: Settings, sensor: str) -> dict[int, dict[str, Any]]:
    """seq -> stored reading of one sensor."""
    docs = snapshot(store, settings.search_index_prefix).values()
    return {d["seq"]: d for d in docs if d["sensor_id"] == sensor}


def _problem(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = str(response.json())
    assert all(word in detail for word in words), detail


def _readers_answer(api: httpx.Client) -> list[dict[str, Any]]:
    """The registry's readers all answer; returns /sensors' items."""
    sensors = api.get("/sensors", headers=AUTH)
    assert sensors.status_code == 200, sensors.text
    for path in ("/readings/latest", "/pipeline/status", "/sensors?status=offline"):
        response = api.get(path, headers=AUTH)
        assert response.status_code == 200, f"{path}: {response.text}"
    _problem(api.get(f"/sensors/{GHOST}", headers=AUTH), 404, "no sensor")
    ghost = api.get(f"/sensors/{GHOST}/metadata", headers=AUTH)
    assert ghost.status_code == 200, ghost.text
    assert (ghost.json()["interval_s"], ghost.json()["note"]) == (60.0, "installed, not wired yet")
    items: list[dict[str, Any]] = sensors.json()["items"]
    return items


def test_sensors_declared_before_any_reading_break_nothing(
    api: httpx.Client, declared: None
) -> None:
    assert _readers_answer(api) == []  # no registry yet: nobody has readings


def test_a_declared_sensor_without_readings_beside_registered_ones(
    api: httpx.Client, stored: None
) -> None:
    items = _readers_answer(api)
    assert sorted(s["sensor_id"] for s in items) == [CALIBRATED, FAST, LATE]  # not the ghost
    declared = {s["sensor_id"]: s["declared"] for s in items}
    assert declared[LATE] is None
    assert declared[FAST]["interval_s"] == 300.0
    assert declared[CALIBRATED]["calibration_offset"] == OFFSET
    one = api.get(f"/sensors/{CALIBRATED}", headers=AUTH).json()
    assert one["declared"] == {
        "sensor_id": CALIBRATED,
        "metric": "temperature",
        "interval_s": 3600.0,
        "calibration_offset": OFFSET,
        "active_from": (HOUR0 + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "active_to": (HOUR0 + timedelta(hours=3)).isoformat().replace("+00:00", "Z"),
        "note": "recalibrated; in service for two hours",
        "declared_at": one["declared"]["declared_at"],
    }


def test_readings_are_calibrated_and_outside_the_active_period_rejected(
    settings: Settings, store: SearchStore, stored: None
) -> None:
    readings = _readings(store, settings, CALIBRATED)
    assert sorted(readings) == [0, 1, 2, 3, 4]  # all stored
    for n, doc in readings.items():
        original = round(20.3 + 0.3 * n, 10)
        assert doc["original_value"] == pytest.approx(original)
        assert doc["value"] == pytest.approx(original + OFFSET)
        assert doc["calibration_offset"] == OFFSET
        assert doc["interval_s"] == 3600.0  # from the very first reading
        if n in (1, 2):  # the second judged by the first
            assert (doc["qc"], doc["valid"], doc["flags"]) == ("CS"[n - 1], True, [])
        else:
            assert (doc["qc"], doc["valid"], doc["flags"]) == ("X", False, ["inactive"])
    # each hour expects one reading from the first; the inactive ones are out
    for n in range(5):
        hour = window(store, settings, "1h", "sensor", CALIBRATED, HOUR0 + timedelta(hours=n))
        assert (hour["expected"], hour["intervals"]) == (1.0, [3600.0])
        if n in (1, 2):
            assert (hour["count"], hour["completeness"]) == (1, 1.0)
            assert hour["mean"] == pytest.approx(20.3 + 0.3 * n + OFFSET)
            assert hour["qc"] == {"CS"[n - 1]: 1}
        else:
            assert (hour["count"], hour["invalid"], hour["completeness"]) == (0, 1, 0.0)
            assert hour["qc"] == {"X": 1}
            assert hour["quality"] == {"inactive": 1}
    assert_aggregates_match(store, settings.search_index_prefix)


def test_a_declared_interval_wins_over_the_learned_one(
    api: httpx.Client, settings: Settings, store: SearchStore, stored: None
) -> None:
    readings = _readings(store, settings, FAST)
    assert {d["interval_s"] for d in readings.values()} == {300.0}
    assert all(d["valid"] and "calibration_offset" not in d for d in readings.values())
    hour = window(store, settings, "1h", "sensor", FAST, HOUR0)
    # six readings where twelve are declared due
    assert (hour["count"], hour["expected"], hour["completeness"]) == (6, 12.0, 0.5)
    # the registry keeps what the readings show; the declaration stands beside it
    sensor = api.get(f"/sensors/{FAST}", headers=AUTH).json()
    assert (sensor["interval_s"], sensor["declared"]["interval_s"]) == (600.0, 300.0)


def test_windows_of_readings_cleaned_before_a_declaration_fall_back_to_it(
    api: httpx.Client, settings: Settings, store: SearchStore, stored: None
) -> None:
    first = HOUR0
    readings = _readings(store, settings, LATE)
    assert [readings[n]["interval_s"] for n in range(3)] == [None, None, 60.0]
    # the registry's learned interval stands in for the first readings' own
    assert window(store, settings, "1m", "sensor", LATE, first)["expected"] == 1.0
    _declare(api, LATE, interval_s=3600)
    recompute_windows(
        store,
        settings.search_index_prefix,
        windows_of(LATE, DISTRICT, "temperature", first.timestamp()),
        settings.sensor_sample_interval_seconds,
    )
    minute = window(store, settings, "1m", "sensor", LATE, first)
    assert minute["expected"] == pytest.approx(60 / 3600)  # declared, before learned
    assert minute["intervals"] == [3600.0]
    # the stored readings keep what they were cleaned with: never retroactive
    assert _readings(store, settings, LATE)[0]["interval_s"] is None


def test_delete_removes_the_declaration_for_new_readings(
    api: httpx.Client, settings: Settings, store: SearchStore, stored: None
) -> None:
    response = api.delete(f"/sensors/{CALIBRATED}/metadata", headers=AUTH)
    assert response.status_code == 204, response.text
    assert api.get(f"/sensors/{CALIBRATED}", headers=AUTH).json()["declared"] is None
    _problem(api.get(f"/sensors/{CALIBRATED}/metadata", headers=AUTH), 404, "nothing declared")
    _problem(api.delete(f"/sensors/{CALIBRATED}/metadata", headers=AUTH), 404)
    # a reading in what was outside the active period: valid now, as sent
    after = HOUR0 + timedelta(hours=3, minutes=40)
    produce_readings(settings, [_reading(CALIBRATED, 10, after, 21.0)])
    process_pending(settings, "metadata-2")
    doc = _readings(store, settings, CALIBRATED)[10]
    assert (doc["value"], doc["original_value"], doc["flags"], doc["valid"]) == (
        21.0,
        21.0,
        [],
        True,
    )
    assert "calibration_offset" not in doc
    # readings stored before keep what they were cleaned with
    assert _readings(store, settings, CALIBRATED)[1]["calibration_offset"] == OFFSET


def test_writes_need_the_key_and_a_deployment_with_one(
    settings: Settings, api: httpx.Client
) -> None:
    body = {"interval_s": 60}
    path = f"/sensors/{GHOST}/metadata"
    _problem(api.put(path, json=body), 401, "X-API-Key")
    _problem(api.put(path, json=body, headers={"X-API-Key": "wrong"}), 401)
    _problem(api.delete(path), 401)
    _problem(api.get(path), 401)  # reads need the key like every read of this deployment
    process, url = start_api(settings, API_KEY="", APP_ENV="local", API_LIVE_ENABLED="false")
    try:
        with httpx.Client(base_url=url, timeout=30) as open_api:
            _problem(open_api.put(path, json=body), 403, "API_KEY")
            _problem(open_api.delete(path), 403, "API_KEY")
            assert open_api.get(path).status_code == 200  # reads stay open
            assert open_api.get("/sensors").status_code == 200
    finally:
        stop_api(process)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "at least one"),
        ({"interval_s": 0}, "interval_s"),
        ({"interval_s": 86401}, "interval_s"),
        ({"calibration_offset": 1.0}, "needs its metric"),
        ({"metric": "temperature", "calibration_offset": 151}, "at most 150"),
        (
            {"active_from": event_stamp(HOUR0), "active_to": event_stamp(HOUR0)},
            "active_to must be after",
        ),
        ({"interval_s": 60, "note": "x" * 501}, "note"),
        ({"interval_s": 60, "unknown": 1}, "unknown"),
    ],
)
def test_bad_declarations_are_422(api: httpx.Client, body: dict[str, Any], words: str) -> None:
    _problem(api.put(f"/sensors/{GHOST}/metadata", json=body, headers=AUTH), 422, words)


def test_a_declared_metric_must_be_the_sensors_own(api: httpx.Client, stored: None) -> None:
    body = {"metric": "humidity", "calibration_offset": 2.0}
    response = api.put(f"/sensors/{FAST}/metadata", json=body, headers=AUTH)
    _problem(response, 422, "reports temperature")
    _problem(api.put(f"/sensors/{'s' * 65}/metadata", json={"interval_s": 60}, headers=AUTH), 422)
