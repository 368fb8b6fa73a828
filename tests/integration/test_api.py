"""The REST API as a real process over a real search node, on data written by Processing."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.indices import readings_index
from iot_pipeline.settings import Settings
from iot_pipeline.storage import IndexAction, make_store

from support.api_process import start_api, stop_api
from support.ground_truth import document_id, expected_ids, snapshot
from support.isolation import own_pipeline
from support.kafka_io import as_produced, consume_all
from support.processing import process_pending
from support.tcp_proxy import TcpProxy
from support.waiting import eventually
from support.workers import backfill

NOW = datetime.now(UTC).replace(microsecond=0)


def _id(reading: dict[str, Any]) -> str:
    """The stored document id of a reading the API served."""
    return document_id(reading["sensor_id"], reading["event_id"])


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "api") as own:
        yield own


def _produce(settings: Settings, start: datetime, count: int, seed: int) -> None:
    backfill(settings, start.strftime("%Y-%m-%dT%H:%M:%SZ"), count, seed)


def _process_new(settings: Settings, batch: str) -> list[OffsetRange]:
    """Index everything not yet processed (the DAG's job, done here directly)."""
    return process_pending(settings, batch)


@pytest.fixture(scope="module")
def stored(settings: Settings) -> dict[str, Any]:
    """About 4 minutes of the simulated network up to now, processed and indexed."""
    _produce(settings, NOW - timedelta(minutes=4), 9800, seed=31)
    _process_new(settings, "api-batch-1")
    store = make_store(settings)
    docs = snapshot(store, settings.search_index_prefix)
    store.close()
    messages = consume_all(settings, settings.kafka_sensor_data_topic, 10**9, idle_seconds=3)
    assert set(docs) == expected_ids(as_produced(messages))
    return docs


@pytest.fixture(scope="module")
def api(settings: Settings, stored: dict[str, Any]) -> Iterator[httpx.Client]:
    process, url = start_api(settings)
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client
    stop_api(process)


def _problem(response: httpx.Response, status: int, parameter: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    if parameter is not None:
        assert parameter in [e["parameter"] for e in body["errors"]], body


def test_health_ready_request_ids_and_metrics(api: httpx.Client) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    assert api.get("/ready").json() == {"status": "ready", "engine": "opensearch"}
    echoed = api.get("/health", headers={"X-Request-ID": "req-42"})
    assert echoed.headers["x-request-id"] == "req-42"
    generated = api.get("/health", headers={"X-Request-ID": "bad id <script>"})
    assert len(generated.headers["x-request-id"]) == 32
    metrics = api.get("/metrics").text
    assert 'api_requests_total{method="GET",route="/health",status="200"}' in metrics
    assert api.get("/openapi.json").json()["info"]["title"] == "IoT sensor pipeline API"


def test_sensors_list_filters_and_one_sensor(api: httpx.Client, stored: dict[str, Any]) -> None:
    horizon = datetime.now(UTC) + timedelta(minutes=5)
    newest: dict[str, datetime] = {}
    for doc in stored.values():
        moment = datetime.fromisoformat(doc["event_time"])
        if moment <= horizon and moment > newest.get(
            doc["sensor_id"], datetime.min.replace(tzinfo=UTC)
        ):
            newest[doc["sensor_id"]] = moment
    sensors = api.get("/sensors").json()["items"]
    now = datetime.now(UTC)
    assert {s["sensor_id"] for s in sensors} == set(newest)
    for sensor in sensors:
        assert datetime.fromisoformat(sensor["last_seen"]) == newest[sensor["sensor_id"]]
        age = (now - newest[sensor["sensor_id"]]).total_seconds()
        if abs(age - 60) > 5:  # away from the threshold, whatever the request's timing
            assert sensor["status"] == ("online" if age < 60 else "offline"), sensor
    offline = api.get("/sensors", params={"status": "offline"}).json()["items"]
    assert {s["status"] for s in offline} <= {"offline"}
    anfa = api.get("/sensors", params={"district": "Anfa", "metric": ["pm25", "no2"]}).json()
    assert anfa["items"]
    assert {(s["district"], s["metric"]) for s in anfa["items"]} <= {
        ("Anfa", "pm25"),
        ("Anfa", "no2"),
    }
    one = sensors[0]
    assert api.get(f"/sensors/{one['sensor_id']}").json()["last_seen"] == one["last_seen"]
    _problem(api.get("/sensors/casa-nowhere-99-co"), 404)
    _problem(api.get("/sensors", params={"status": "sleepy"}), 422, "status")


def _walk(api: httpx.Client, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.get("/readings", params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_readings_filters_match_the_store(api: httpx.Client, stored: dict[str, Any]) -> None:
    sensor = sorted({d["sensor_id"] for d in stored.values()})[5]
    mine = {i for i, d in stored.items() if d["sensor_id"] == sensor}
    walked = _walk(api, {"sensor_id": sensor, "limit": 7})
    assert [_id(r) for r in walked] == sorted(
        mine, key=lambda i: (stored[i]["event_time"], i), reverse=True
    )
    assert walked[0]["kafka"]["topic"].endswith(".api")  # provenance is served

    start = NOW - timedelta(minutes=2)
    end = NOW - timedelta(minutes=1)
    district = sorted({d["district"] for d in stored.values()})[-1]
    window = _walk(
        api,
        {
            "district": district,
            "metric": "temperature",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "order": "asc",
            "limit": 1000,
        },
    )
    expected = {
        i
        for i, d in stored.items()
        if d["district"] == district
        and d["metric"] == "temperature"
        and start <= datetime.fromisoformat(d["event_time"]) < end
    }
    assert {_id(r) for r in window} == expected
    assert expected

    invalid = _walk(api, {"quality": "invalid", "limit": 1000})
    assert {_id(r) for r in invalid} == {i for i, d in stored.items() if not d["valid"]}
    spikes = _walk(api, {"flag": "spike", "limit": 1000})
    assert {_id(r) for r in spikes} == {i for i, d in stored.items() if "spike" in d["flags"]}

    # one QC verdict per reading, filtered on; only S and C enter the aggregates
    verdicts = {i: d["qc"] for i, d in stored.items()}
    assert set(verdicts.values()) == {"S", "C", "Q", "X"}
    assert all((d["qc"] in ("S", "C")) == d["valid"] for d in stored.values())
    questioned = _walk(api, {"qc": ["Q", "X"], "limit": 1000})
    assert {_id(r) for r in questioned} == {i for i, v in verdicts.items() if v in ("Q", "X")}
    assert {r["qc"] for r in questioned} == {"Q", "X"}
    _problem(api.get("/readings", params={"qc": "Z"}), 422, "qc")


def test_bad_parameters_are_422_naming_them(api: httpx.Client) -> None:
    _problem(api.get("/readings", params={"limit": 5000}), 422, "limit")
    _problem(api.get("/readings", params={"limit": 0}), 422, "limit")
    _problem(api.get("/readings", params={"start": "yesterday"}), 422, "start")
    _problem(
        api.get("/readings", params={"start": NOW.isoformat(), "end": NOW.isoformat()}), 422, "end"
    )
    _problem(api.get("/readings", params={"metric": "radon"}), 422, "metric")
    _problem(api.get("/readings", params={"cursor": "not-a-cursor"}), 422, "cursor")
    _problem(api.get("/readings", params={"sensor_id": "x" * 65}), 422, "sensor_id")
    _problem(api.get("/aggregates", params={"metric": "pm25", "resolution": "5m"}), 422)
    _problem(api.get("/aggregates"), 422, "metric")
    _problem(api.post("/readings"), 405)


def test_pagination_neither_skips_nor_repeats_while_data_arrives(
    settings: Settings, api: httpx.Client, stored: dict[str, Any]
) -> None:
    params: dict[str, str | int] = {"metric": "humidity", "limit": 50}
    before = {i for i, d in stored.items() if d["metric"] == "humidity"}
    first = api.get("/readings", params=params).json()
    seen = [_id(r) for r in first["items"]]
    # newer readings arrive between two pages (another batch is indexed)
    _produce(settings, NOW + timedelta(seconds=5), 980, seed=32)
    assert _process_new(settings, "api-batch-2")
    store = make_store(settings)
    arrived = set(snapshot(store, settings.search_index_prefix)) - set(stored)
    store.close()
    assert arrived
    cursor = first["next_cursor"]
    while cursor:
        page = api.get("/readings", params={**params, "cursor": cursor}).json()
        seen += [_id(r) for r in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen))  # nothing repeated
    assert before <= set(seen)  # nothing skipped
    assert set(seen) - before <= arrived  # new ones only where they sort after the cursor


def test_latest_is_the_newest_valid_reading_of_each_sensor(
    api: httpx.Client, settings: Settings
) -> None:
    store = make_store(settings)
    docs = snapshot(store, settings.search_index_prefix)
    store.close()
    newest: dict[str, str] = {}
    horizon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    for i, d in sorted(docs.items(), key=lambda kv: (kv[1]["event_time"], kv[0])):
        if d["valid"] and d["metric"] == "no2" and d["event_time"] <= horizon:
            newest[d["sensor_id"]] = i
    latest = api.get("/readings/latest", params={"metric": "no2"}).json()["items"]
    assert {r["sensor_id"]: _id(r) for r in latest} == newest


def test_latest_falls_back_when_a_later_rule_invalidates_the_newest_valid_reading(
    api: httpx.Client, settings: Settings
) -> None:
    """The registry points at the newest reading valid when it was cleaned; a later rule
    (buddy check, hindsight) may question it: the sensor's latest is then the valid one
    before it, never a sensor left out."""
    store = make_store(settings)
    docs = snapshot(store, settings.search_index_prefix)
    served = api.get("/readings/latest", params={"metric": "no2"}).json()["items"]
    newest = served[0]
    mine = sorted(
        (d["event_time"], i)
        for i, d in docs.items()
        if d["sensor_id"] == newest["sensor_id"] and d["valid"]
    )
    assert mine[-1][1] == _id(newest)
    assert len(mine) > 1
    questioned = {"flags": ["spatial"], "valid": False, "qc": "Q"}
    original = {k: docs[_id(newest)][k] for k in questioned}
    index = readings_index(
        settings.search_index_prefix, datetime.fromisoformat(newest["event_time"])
    )

    def put(fields: dict[str, Any]) -> None:
        action = IndexAction(index, _id(newest), {"doc": fields}, op="update")
        assert not store.bulk_index([action], refresh=True).failures

    try:
        put(questioned)
        after = api.get("/readings/latest", params={"metric": "no2"}).json()["items"]
    finally:
        put(original)
        store.close()
    by_sensor = {r["sensor_id"]: _id(r) for r in after}
    assert by_sensor[newest["sensor_id"]] == mine[-2][1]
    assert len(after) == len(served)


def test_aggregates_by_scope_key_and_pages(api: httpx.Client, settings: Settings) -> None:
    store = make_store(settings)
    stored = snapshot(store, settings.search_index_prefix)
    # the last batch's window updates become searchable within the refresh interval
    store.refresh(f"{settings.search_index_prefix}-agg-*")
    store.close()
    everything: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"metric": "pm25", "resolution": "1m", "limit": 9}
        page = api.get("/aggregates", params={**params, **({"cursor": cursor} if cursor else {})})
        body = page.json()
        everything += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    keys = [(a["window_start"], a["key"]) for a in everything]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    valid: dict[tuple[datetime, str], int] = defaultdict(int)
    for d in stored.values():
        if d["valid"] and d["metric"] == "pm25":
            minute = datetime.fromisoformat(d["event_time"]).replace(second=0, microsecond=0)
            valid[(minute, d["district"])] += 1
    served = {(datetime.fromisoformat(a["window_start"]), a["key"]): a["count"] for a in everything}
    assert {k: v for k, v in served.items() if v} == dict(valid)
    for a in everything:  # every reading of a window counted under its verdict
        assert sum(a["qc"].values()) == a["readings"]
        assert a["qc"].get("S", 0) + a["qc"].get("C", 0) == a["count"]
    one = api.get(
        "/aggregates", params={"metric": "pm25", "scope": "sensor", "key": "casa-anfa-01-pm25"}
    ).json()["items"]
    assert one
    assert {a["key"] for a in one} == {"casa-anfa-01-pm25"}
    assert {a["resolution"] for a in one} == {"1h"}


def test_stream_delivers_readings_produced_after_connecting(
    settings: Settings, api: httpx.Client
) -> None:
    received: list[dict[str, Any]] = []
    connected = threading.Event()

    def listen() -> None:
        with api.stream("GET", "/stream/readings", params={"metric": "co"}, timeout=60) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            deadline = time.monotonic() + 45
            for line in response.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("data: "):
                    event = json.loads(line.removeprefix("data: "))
                    if not event["provisional"]:  # the stored version (the live path's is
                        received.append(event)  # tested in test_live_stream)
                if len(received) >= 14 or time.monotonic() > deadline:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert connected.wait(15)
    _produce(settings, NOW + timedelta(minutes=2), 196, seed=33)
    _process_new(settings, "api-batch-3")
    listener.join(50)
    assert len(received) >= 14, received
    assert {r["metric"] for r in received} == {"co"}
    assert {r["batch_id"] for r in received} == {"api-batch-3"}
    assert len({r["event_id"] for r in received}) == len(received)


def test_pipeline_status_reports_lag_last_batch_and_dead_letters(
    settings: Settings, api: httpx.Client
) -> None:
    status = api.get("/pipeline/status").json()
    assert status["consumer_group"] == settings.etl_consumer_group
    assert len(status["partitions"]) == 6
    assert status["total_lag"] == 0  # _process_new commits what it indexed
    assert status["last_batch"]["batch_id"].startswith("api-batch-")
    letters = consume_all(settings, settings.dead_letter_topic, 10**9, idle_seconds=3)
    assert status["dead_letters"] == len(letters) > 0


def test_api_key_cors_and_open_probes(settings: Settings, stored: dict[str, Any]) -> None:
    process, url = start_api(
        settings, API_KEY="k3y-for-tests-only", API_CORS_ORIGINS="https://city.example"
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/health").status_code == 200
            assert client.get("/ready").status_code == 200
            _problem(client.get("/readings"), 401)
            _problem(client.get("/metrics", headers={"X-API-Key": "wrong"}), 401)
            ok = client.get(
                "/readings",
                headers={"X-API-Key": "k3y-for-tests-only", "Origin": "https://city.example"},
            )
            assert ok.status_code == 200
            assert ok.headers["access-control-allow-origin"] == "https://city.example"
            other = client.get("/health", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers
    finally:
        stop_api(process)


def test_store_down_gives_503_and_recovers_without_restart(
    settings: Settings, stored: dict[str, Any]
) -> None:
    proxy = TcpProxy(settings.search_address)
    proxy.start()
    process, url = start_api(settings, SEARCH_URL=proxy.url)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/readings").status_code == 200
            proxy.stop()
            _problem(client.get("/ready"), 503)
            down = client.get("/readings", params={"limit": 5})
            _problem(down, 503)
            assert down.headers["retry-after"] == "5"
            proxy.start()
            eventually(
                lambda: client.get("/ready").status_code == 200,
                20,
                "recovery after the store came back",
                interval=0.5,
            )
            assert len(client.get("/readings", params={"limit": 5}).json()["items"]) == 5
    finally:
        stop_api(process)
        proxy.stop()


def test_docs_pages_render_from_the_apis_own_assets(api: httpx.Client) -> None:
    """/docs and /redoc reference no CDN: every script, style sheet and icon they load is
    served by the API itself (an offline deployment renders them)."""
    import re

    for page, needs in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = api.get(page)
        assert html.status_code == 200, html.text
        assert html.headers["content-type"].startswith("text/html")
        refs = re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""", html.text)
        urls = [a or b for a, b in refs]
        assert urls, html.text
        assert [u for u in urls if "://" in u or u.startswith("//")] == [], urls
        assert any(u.endswith(needs) for u in urls)
        for url in urls:
            asset = api.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 100, url
