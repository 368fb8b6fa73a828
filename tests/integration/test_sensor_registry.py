"""The sensor registry on the real stack: the workers' upserts only move a sensor forward
whatever order ranges arrive in, the API's sensor views read the registry and never the
readings, and a registry rebuilt from the readings matches the one the workers kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from iot_pipeline.indices import readings_pattern, sensors_index
from iot_pipeline.processing import registry
from iot_pipeline.settings import Settings
from iot_pipeline.storage import SearchStore

from support.api_process import api_client
from support.clock import event_stamp
from support.isolation import own_pipeline
from support.kafka_io import produce_readings
from support.processing import process_pending
from support.readings import sample_reading

SENSOR = "casa-anfa-01-temperature"
OTHER = "casa-maarif-02-humidity"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "registry") as own:
        yield own


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[httpx.Client]:
    with api_client(settings) as client:
        yield client


def _send(settings: Settings, batch: str, readings: list[dict[str, Any]]) -> None:
    produce_readings(settings, readings)
    process_pending(settings, batch)


def _temperature(n: int, at: datetime, value: float) -> dict[str, Any]:
    return sample_reading(event_id=f"t-{n}", seq=n, event_time=event_stamp(at), value=value)


def _humidity(n: int, at: datetime) -> dict[str, Any]:
    return sample_reading(
        event_id=f"h-{n}",
        seq=n,
        event_time=event_stamp(at),
        sensor_id=OTHER,
        station_id="casa-maarif-02",
        district="Maarif",
        metric="humidity",
        unit="%",
        value=60.0 + n % 5,
        lat=33.58,
        lon=-7.63,
    )


def _entry(store: SearchStore, settings: Settings, sensor: str) -> dict[str, Any]:
    index = sensors_index(settings.search_index_prefix)
    store.refresh(index)
    return store.get_many(index, [sensor])[sensor]


@pytest.fixture(scope="module")
def history(settings: Settings) -> dict[str, datetime]:
    """Three batches in an order a real network produces: live readings, then a backfill
    of two days ago, then a broken reading and one from a clock an hour fast."""
    recent = NOW - timedelta(minutes=10)
    _send(
        settings,
        "registry-live",
        [_temperature(i, recent + timedelta(minutes=i), 20.0 + i) for i in range(6)]
        + [_humidity(i, recent + timedelta(minutes=i)) for i in range(6)],
    )
    old = NOW - timedelta(days=2)
    _send(
        settings,
        "registry-backfill",
        [_temperature(100 + i, old + timedelta(minutes=i), 18.0) for i in range(3)],
    )
    broken = NOW - timedelta(minutes=1)
    _send(
        settings,
        "registry-broken",
        [_temperature(200, broken, 999.0), _temperature(201, NOW + timedelta(hours=1), 21.0)],
    )
    return {"recent": recent, "old": old, "broken": broken}


def test_the_registry_only_moves_a_sensor_forward(
    settings: Settings, store: SearchStore, history: dict[str, datetime]
) -> None:
    entry = _entry(store, settings, SENSOR)
    newest_valid = history["recent"] + timedelta(minutes=5)
    # the broken reading is the newest seen; the clock an hour fast is not seen at all
    assert datetime.fromisoformat(entry["last_seen"]) == history["broken"]
    assert entry["last"]["id"] == f"{SENSOR}:t-200"
    assert (entry["last"]["value"], entry["last"]["valid"]) == (999.0, False)
    # the backfill, processed after the live readings, moved neither last nor last valid
    assert entry["last_valid"]["id"] == f"{SENSOR}:t-5"
    assert entry["last_valid"]["ms"] == int(newest_valid.timestamp() * 1000)
    # but it moved the first reading back, and its batch is the latest that wrote
    assert datetime.fromisoformat(entry["first_seen"]) == history["old"]
    assert entry["batch_id"] == "registry-broken"
    assert (entry["district"], entry["station_id"], entry["unit"]) == ("Anfa", "casa-anfa-01", "°C")


def test_the_api_serves_sensors_and_latest_readings_from_the_registry(
    settings: Settings, api: httpx.Client, history: dict[str, datetime]
) -> None:
    sensors = {s["sensor_id"]: s for s in api.get("/sensors").json()["items"]}
    assert set(sensors) == {SENSOR, OTHER}
    assert datetime.fromisoformat(sensors[SENSOR]["last_seen"]) == history["broken"]
    assert sensors[SENSOR]["last_value"] == 999.0
    assert sensors[SENSOR]["status"] == "offline"  # a minute ago, and offline after 60 s
    assert [
        s["sensor_id"] for s in api.get("/sensors", params={"district": "Maarif"}).json()["items"]
    ] == [OTHER]
    assert api.get(f"/sensors/{OTHER}").json()["metric"] == "humidity"

    latest = {r["sensor_id"]: r for r in api.get("/readings/latest").json()["items"]}
    assert latest[SENSOR]["event_id"] == "t-5"  # the newest valid one
    assert latest[OTHER]["event_id"] == "h-5"
    everything = api.get("/readings/latest", params={"include_invalid": True}).json()["items"]
    assert {r["sensor_id"]: r["event_id"] for r in everything} == {SENSOR: "t-200", OTHER: "h-5"}
    assert api.get("/readings/latest", params={"within_hours": 0.01}).json()["items"] == []
    status = api.get("/pipeline/status").json()
    assert status["last_batch"]["batch_id"] == "registry-broken"


def _query_total(store: SearchStore, pattern: str) -> int:
    response = store.client.indices.stats(index=pattern, metric="search")  # type: ignore[attr-defined]
    return int(response["_all"]["total"]["search"]["query_total"])


def test_sensor_views_never_scan_the_readings(
    settings: Settings, store: SearchStore, api: httpx.Client, history: dict[str, datetime]
) -> None:
    readings = readings_pattern(settings.search_index_prefix)
    days = len(store.list_indices(readings))
    before = _query_total(store, readings)
    for _ in range(10):
        assert len(api.get("/sensors").json()["items"]) == 2
        assert api.get(f"/sensors/{SENSOR}").status_code == 200
        assert api.get("/pipeline/status").status_code == 200
    assert _query_total(store, readings) == before
    for _ in range(10):
        assert len(api.get("/readings/latest").json()["items"]) == 2
    # one ids query per call, one shard per daily index
    assert _query_total(store, readings) - before <= 10 * days


def test_a_rebuilt_registry_matches_the_one_the_workers_kept(
    settings: Settings, store: SearchStore, history: dict[str, datetime]
) -> None:
    kept = {s: _entry(store, settings, s) for s in (SENSOR, OTHER)}
    index = sensors_index(settings.search_index_prefix)
    store.delete_indices([index])
    assert registry.ensure(store, settings.search_index_prefix, datetime.now(UTC)) == 2
    assert registry.ensure(store, settings.search_index_prefix, datetime.now(UTC)) is None
    batch_fields = {"batch_id", "ingest_time", "ingest_ms"}
    for sensor, entry in kept.items():
        rebuilt = _entry(store, settings, sensor)
        assert {k: v for k, v in rebuilt.items() if k not in batch_fields} == {
            k: v for k, v in entry.items() if k not in batch_fields
        }
