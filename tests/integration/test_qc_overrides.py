"""Operator overrides on the real stack: created and deleted through the real API process,
settled on the stored readings by the worker task's function (run here, in-process, as
`process_range` is: the stack's own worker runs the deployed code), applied at cleaning
time to readings that arrive later; the aggregates follow (revision + 1) and always equal an
offline computation over the valid stored readings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from iot_pipeline.contracts.tasks import SETTLE_OVERRIDE
from iot_pipeline.indices import aggregates_pattern
from iot_pipeline.orchestration.override_sweep import sweep_overrides
from iot_pipeline.processing.overrides import settle, unsettled
from iot_pipeline.settings import Settings
from iot_pipeline.storage import SearchStore, make_store

from support.api_process import api_client, start_api, stop_api
from support.clock import event_stamp
from support.ground_truth import assert_aggregates_match, snapshot
from support.isolation import own_pipeline
from support.kafka_io import produce_readings
from support.processing import process_pending
from support.readings import pm_reading, sample_reading
from support.workers import drop_queued

KEY = "overrides-test-key"
AUTH = {"X-API-Key": KEY}
HOUR = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
REJECTED = "casa-anfa-01-temperature"  # gets a reject over minutes [2, 6)
NEIGHBOUR = "casa-anfa-02-temperature"  # same district, never overridden
SPIKY = "casa-anfa-03-temperature"  # a spike at minute 4, accepted by hand


def _at(minute: float) -> str:
    return event_stamp(HOUR + timedelta(minutes=minute))


def _reading(sensor: str, n: int, value: float, minute: float | None = None) -> dict[str, Any]:
    station = sensor.removesuffix("-temperature")
    return sample_reading(
        event_id=f"{station}-{n}",
        sensor_id=sensor,
        station_id=station,
        seq=n,
        value=value,
        event_time=_at(n if minute is None else minute),
    )


SETTINGS: list[Settings] = []  # the module's, for the helpers


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "overrides") as own:
        SETTINGS[:] = [own]
        yield own


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[httpx.Client]:
    try:
        with api_client(settings, API_KEY=KEY) as client:
            yield client
    finally:
        # no worker of this module took the API's messages (the tests settle in-process)
        drop_queued(settings, SETTLE_OVERRIDE)


@pytest.fixture(scope="module")
def stored(settings: Settings) -> None:
    """Ten minutes of three sensors of one district, one reading a minute."""
    produce_readings(
        settings,
        [_reading(REJECTED, n, 20.0 + 0.1 * n) for n in range(10)]
        + [_reading(NEIGHBOUR, n, 21.0 + 0.1 * (n % 2)) for n in range(10)]
        + [_reading(SPIKY, n, 35.0 if n == 4 else 20.0 + 0.1 * (n % 2)) for n in range(8)],
    )
    process_pending(settings, "overrides-1")


def _settle(store: SearchStore, settings: Settings, override_id: str) -> dict[str, object]:
    """What the worker's task does once it holds the lock."""
    return settle(
        store,
        settings.search_index_prefix,
        override_id,
        settings.sensor_sample_interval_seconds,
    ).as_dict()


def _readings(store: SearchStore, settings: Settings, sensor: str) -> dict[int, dict[str, Any]]:
    """minute -> stored reading of one sensor."""
    docs = snapshot(store, settings.search_index_prefix)
    return {
        int((datetime.fromisoformat(d["event_time"]) - HOUR).total_seconds() // 60): d
        for d in docs.values()
        if d["sensor_id"] == sensor
    }


def _hour(api: httpx.Client, scope: str, key: str) -> dict[str, Any]:
    """The 1-hour window of the readings, as the API serves it (refreshed: the windows are
    written without a refresh)."""
    store = make_store(SETTINGS[0])
    try:
        store.refresh(aggregates_pattern(SETTINGS[0].search_index_prefix, "1h"))
    finally:
        store.close()
    params = {
        "metric": "temperature",
        "resolution": "1h",
        "scope": scope,
        "key": key,
        "start": HOUR.isoformat(),
        "end": (HOUR + timedelta(hours=1)).isoformat(),
    }
    response = api.get("/aggregates", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    (item,) = response.json()["items"]
    return dict(item)


def _create(api: httpx.Client, sensor: str, start: float, end: float, action: str) -> str:
    body = {
        "sensor_id": sensor,
        "start": _at(start),
        "end": _at(end),
        "action": action,
        "reason": f"{action} by the test",
    }
    response = api.post("/qc/overrides", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "pending"
    assert response.headers["location"] == f"/qc/overrides/{created['id']}"
    return str(created["id"])


def _problem(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    assert all(word in detail for word in words), detail


def test_a_reject_invalidates_the_stored_readings_and_their_windows_follow(
    settings: Settings, store: SearchStore, api: httpx.Client, stored: None
) -> None:
    sensor_before = _hour(api, "sensor", REJECTED)
    district_before = _hour(api, "district", "Anfa")
    assert sensor_before["count"] == 10

    override_id = _create(api, REJECTED, 2, 6, "reject")
    pending = api.get(f"/qc/overrides/{override_id}", headers=AUTH).json()
    assert pending["status"] == "pending"  # visible before a worker settled it
    settled = _settle(store, settings, override_id)

    assert settled == {
        "override_id": override_id,
        "status": "applied",
        "readings_changed": 4,
        "windows_written": settled["windows_written"],
        "more": False,  # minutes: one slice
    }
    assert int(settled["windows_written"]) > 0  # type: ignore[call-overload]
    readings = _readings(store, settings, REJECTED)
    for minute, doc in readings.items():
        if 2 <= minute < 6:
            assert (doc["qc"], doc["valid"], doc["override"]) == ("B", False, "B"), doc
            assert doc["auto_qc"] == "S"
            assert doc["flags"] == []
        else:
            assert doc["valid"] is True
            assert "override" not in doc
    # the windows: revision + 1, the rejected readings out, equal to an offline computation
    sensor_after = _hour(api, "sensor", REJECTED)
    assert sensor_after["count"] == 6
    assert sensor_after["revision"] == sensor_before["revision"] + 1
    assert sensor_after["qc"]["B"] == 4
    district_after = _hour(api, "district", "Anfa")
    assert district_after["count"] == district_before["count"] - 4
    assert district_after["revision"] == district_before["revision"] + 1
    assert_aggregates_match(store, settings.search_index_prefix)
    # the API lists them by verdict, and the override says what it did
    rejected = api.get("/readings", params={"qc": "B"}, headers=AUTH).json()["items"]
    assert sorted(r["event_id"] for r in rejected) == [f"casa-anfa-01-{n}" for n in range(2, 6)]
    applied = api.get(f"/qc/overrides/{override_id}", headers=AUTH).json()
    assert applied["status"] == "applied"
    assert applied["readings_changed"] == 4
    assert applied["applied_at"] is not None

    # settling again changes nothing
    assert _settle(store, settings, override_id)["status"] == "applied"
    assert _hour(api, "sensor", REJECTED)["revision"] == sensor_after["revision"]


def test_a_reading_that_arrives_later_gets_the_override_at_cleaning_time(
    settings: Settings, store: SearchStore, api: httpx.Client, stored: None
) -> None:
    before = _hour(api, "sensor", REJECTED)
    produce_readings(settings, [_reading(REJECTED, 40, 20.45, minute=4.5)])  # late, in range
    process_pending(settings, "overrides-2")
    late = next(d for d in _readings(store, settings, REJECTED).values() if d["seq"] == 40)
    assert (late["qc"], late["valid"], late["override"], late["auto_qc"]) == (
        "B",
        False,
        "B",
        "S",
    )
    after = _hour(api, "sensor", REJECTED)
    assert after["count"] == before["count"]
    assert after["qc"]["B"] == 5
    assert_aggregates_match(store, settings.search_index_prefix)


def test_an_accept_puts_a_spike_back_into_the_aggregates(
    settings: Settings, store: SearchStore, api: httpx.Client, stored: None
) -> None:
    spike = _readings(store, settings, SPIKY)[4]
    assert (spike["qc"], spike["valid"]) == ("Q", False)
    assert "spike" in spike["flags"]
    before = _hour(api, "sensor", SPIKY)

    override_id = _create(api, SPIKY, 0, 60, "accept")
    assert _settle(store, settings, override_id)["status"] == "applied"

    readings = _readings(store, settings, SPIKY)
    assert readings[4]["qc"] == "G"
    assert readings[4]["valid"] is True
    assert readings[4]["auto_qc"] == "Q"
    assert "spike" in readings[4]["flags"]  # the rules' verdict stays knowable
    assert {d["qc"] for d in readings.values()} == {"G"}
    after = _hour(api, "sensor", SPIKY)
    assert after["count"] == before["count"] + 1
    assert after["max"] == 35.0
    assert after["qc"] == {"G": 8}
    assert after["revision"] == before["revision"] + 1
    assert_aggregates_match(store, settings.search_index_prefix)
    accepted = api.get("/readings", params={"qc": "G", "limit": 100}, headers=AUTH).json()
    assert len(accepted["items"]) == 8


def test_delete_reverts_the_readings_and_the_windows(
    settings: Settings, store: SearchStore, api: httpx.Client, stored: None
) -> None:
    (listed,) = api.get(
        "/qc/overrides", params={"sensor_id": REJECTED, "status": "applied"}, headers=AUTH
    ).json()["items"]
    before = _hour(api, "sensor", REJECTED)

    response = api.delete(f"/qc/overrides/{listed['id']}", headers=AUTH)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "removing"
    settled = _settle(store, settings, listed["id"])

    assert settled["status"] == "removed"
    assert settled["readings_changed"] == 5  # the four, and the one cleaned under it
    readings = _readings(store, settings, REJECTED)
    assert all(d["valid"] for d in readings.values())
    assert not any("override" in d or "auto_qc" in d for d in readings.values())
    assert {d["qc"] for d in readings.values()} == {"C", "S"}
    after = _hour(api, "sensor", REJECTED)
    assert after["count"] == 11
    assert after["revision"] == before["revision"] + 1
    assert "B" not in after["qc"]
    assert_aggregates_match(store, settings.search_index_prefix)
    removed = api.get(f"/qc/overrides/{listed['id']}", headers=AUTH).json()
    assert removed["status"] == "removed"
    assert removed["readings_reverted"] == 5
    # deleting again is harmless
    assert api.delete(f"/qc/overrides/{listed['id']}", headers=AUTH).status_code == 202


def test_writes_need_the_key_and_a_deployment_with_one(
    settings: Settings, api: httpx.Client
) -> None:
    body = {
        "sensor_id": REJECTED,
        "start": _at(0),
        "end": _at(1),
        "action": "reject",
        "reason": "no key",
    }
    _problem(api.post("/qc/overrides", json=body), 401, "X-API-Key")
    _problem(api.post("/qc/overrides", json=body, headers={"X-API-Key": "wrong"}), 401)
    _problem(api.delete(f"/qc/overrides/{'0' * 32}"), 401)
    process, url = start_api(settings, API_KEY="", APP_ENV="local", API_LIVE_ENABLED="false")
    try:
        with httpx.Client(base_url=url, timeout=30) as open_api:
            _problem(open_api.post("/qc/overrides", json=body), 403, "API_KEY")
            _problem(open_api.delete(f"/qc/overrides/{'0' * 32}"), 403, "API_KEY")
            assert open_api.get("/qc/overrides").status_code == 200  # reads stay open
    finally:
        stop_api(process)


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        ({"end": _at(0)}, "end must be after start"),
        ({"end": (HOUR + timedelta(days=400)).isoformat()}, "at most 366 days"),
        ({"start": "1999-12-31T00:00:00Z", "end": "2000-01-02T00:00:00Z"}, "start"),
        ({"action": "maybe"}, "action"),
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        ({"sensor_id": "s" * 65}, "sensor_id"),
        ({"status": "applied"}, "status"),
    ],
)
def test_bad_bodies_are_422(api: httpx.Client, change: dict[str, str], parameter: str) -> None:
    body = {
        "sensor_id": REJECTED,
        "start": _at(0),
        "end": _at(1),
        "action": "reject",
        "reason": "test",
    }
    _problem(api.post("/qc/overrides", json={**body, **change}, headers=AUTH), 422, parameter)


def test_unknown_and_malformed_ids(api: httpx.Client) -> None:
    _problem(api.get(f"/qc/overrides/{'a' * 32}", headers=AUTH), 404, "no override")
    _problem(api.delete(f"/qc/overrides/{'a' * 32}", headers=AUTH), 404, "no override")
    _problem(api.get("/qc/overrides/not-an-id", headers=AUTH), 422, "override_id")


def test_an_override_the_workers_never_heard_of_is_swept_up(
    settings: Settings, store: SearchStore, stored: None
) -> None:
    # an API whose broker is down: the override is stored, pending, and not lost
    process, url = start_api(
        settings, API_KEY=KEY, REDIS_URL="redis://127.0.0.1:1/15", API_LIVE_ENABLED="false"
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as cut_off:
            override_id = _create(cut_off, NEIGHBOUR, 0, 1, "reject")
    finally:
        stop_api(process)
    assert override_id in unsettled(store, settings.search_index_prefix)

    sent = sweep_overrides(settings)

    assert override_id in sent
    broker = redis.Redis.from_url(settings.redis_url)
    try:  # the message is there for a worker; taken back so no other test's worker sees it
        queued = [
            m
            for m in broker.lrange("processing", 0, -1)
            if isinstance(m, bytes) and override_id.encode() in m
        ]
        assert queued
        for message in queued:
            # redis-py types LREM's value as str; the element as read (bytes) is what it matches
            broker.lrem("processing", 1, message)  # type: ignore[arg-type]
    finally:
        broker.close()
    assert _settle(store, settings, override_id)["status"] == "applied"
    assert override_id not in unsettled(store, settings.search_index_prefix)
    assert _readings(store, settings, NEIGHBOUR)[0]["qc"] == "B"
    assert_aggregates_match(store, settings.search_index_prefix)


def _pm(station: str, metric: str, value: float) -> dict[str, Any]:
    return pm_reading(station, metric, value, HOUR + timedelta(minutes=30))


def test_a_later_rule_keeps_the_operators_verdict(
    settings: Settings, store: SearchStore, api: httpx.Client, stored: None
) -> None:
    # a PM2.5 reading accepted by hand, then its PM10 partner arrives below it: the
    # cross-metric rule flags it, its automatic verdict moves, the operator's stays
    station = "casa-xm-07"
    produce_readings(settings, [_pm(station, "pm25", 80.0)])
    process_pending(settings, "overrides-pm-1")
    override_id = _create(api, f"{station}-pm25", 0, 60, "accept")
    assert _settle(store, settings, override_id)["readings_changed"] == 1
    produce_readings(settings, [_pm(station, "pm10", 50.0)])
    process_pending(settings, "overrides-pm-2")

    docs = {d["metric"]: d for d in snapshot(store, settings.search_index_prefix).values()}
    pm25, pm10 = docs["pm25"], docs["pm10"]
    assert pm25["flags"] == ["cross_metric"]
    assert (pm25["qc"], pm25["valid"], pm25["override"], pm25["auto_qc"]) == ("G", True, "G", "Q")
    assert (pm10["qc"], pm10["valid"]) == ("Q", False)
    assert "override" not in pm10
    assert_aggregates_match(store, settings.search_index_prefix)


def test_a_long_override_is_settled_one_day_at_a_time(
    settings: Settings, store: SearchStore, api: httpx.Client
) -> None:
    # one reading every 8 hours over the last three days and a half
    sensor = "casa-anfa-07-temperature"
    first = HOUR - timedelta(hours=80)
    readings = [
        sample_reading(
            event_id=f"long-{n}",
            sensor_id=sensor,
            station_id="casa-anfa-07",
            seq=n,
            value=20.0 + 0.3 * n,
            event_time=(first + timedelta(hours=8 * n)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        )
        for n in range(11)
    ]
    produce_readings(settings, readings)
    process_pending(settings, "overrides-long")
    body = {
        "sensor_id": sensor,
        "start": first.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": HOUR.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "action": "reject",
        "reason": "a long maintenance",
    }
    response = api.post("/qc/overrides", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    override_id = response.json()["id"]

    slices = []
    while True:
        settled = _settle(store, settings, override_id)
        slices.append(settled)
        if not settled["more"]:
            break
        shown = api.get(f"/qc/overrides/{override_id}", headers=AUTH).json()
        assert shown["status"] == "pending"
        assert shown["settled_until"] is not None  # how far the workers got
    assert len(slices) == 4  # 80 hours, a day per slice
    assert slices[-1]["status"] == "applied"
    assert slices[-1]["readings_changed"] == 10  # all but the last, at the range's end
    shown = api.get(f"/qc/overrides/{override_id}", headers=AUTH).json()
    assert (shown["status"], shown["readings_changed"], shown["settled_until"]) == (
        "applied",
        10,
        None,
    )
    docs = snapshot(store, settings.search_index_prefix)
    verdicts = sorted((d["event_time"], d["qc"]) for d in docs.values() if d["sensor_id"] == sensor)
    assert [qc for _, qc in verdicts] == ["B"] * 10 + ["S"]
    assert_aggregates_match(store, settings.search_index_prefix)


def test_an_override_created_while_a_range_is_in_flight_reaches_its_readings(
    settings: Settings, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: a range loads the overrides, an operator rejects its sensor's readings and
    a worker settles that before the range has stored them (nothing to change yet); the
    range then stores its readings with the verdicts of before. It sees the overrides'
    generation move while it was in flight and brings its own readings to the override."""
    from iot_pipeline.processing import pipeline

    sensor = "casa-anfa-19-temperature"  # no other test's
    produce_readings(
        settings,
        [_reading(sensor, 100 + n, 20.0 + n / 10, minute=30 + n) for n in range(5)],
    )
    real_load = pipeline.load_active  # type: ignore[attr-defined]  # imported there, not exported
    created: list[str] = []

    def load_then_race(*args: Any, **kwargs: Any) -> Any:
        found = real_load(*args, **kwargs)  # the range has its overrides: none for `sensor`
        if not created:
            body = {
                "sensor_id": sensor,
                "start": _at(29),
                "end": _at(40),
                "action": "reject",
                "reason": "in-flight race",
            }
            answer = api.post("/qc/overrides", json=body, headers=AUTH)
            assert answer.status_code == 201, answer.text
            created.append(answer.json()["id"])
            settled = _settle(store, settings, created[0])  # a worker, before the range stores
            assert (settled["status"], settled["readings_changed"]) == ("applied", 0)
        return found

    monkeypatch.setattr(pipeline, "load_active", load_then_race)
    store = make_store(settings)
    try:
        process_pending(settings, "in-flight", store)
        stored = snapshot(store, settings.search_index_prefix)
        mine = [d for d in stored.values() if d["sensor_id"] == sensor]
        assert len(mine) == 5
        assert {(d["qc"], d["valid"]) for d in mine} == {("B", False)}
        assert assert_aggregates_match(store, settings.search_index_prefix) > 0
    finally:
        store.close()
