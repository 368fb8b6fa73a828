"""An operator's override through the real parts: the API stores it and sends it through the
broker, a Celery worker (as `make up` runs it) settles it on the stored readings and their
windows, and a DELETE is reverted the same way."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from iot_pipeline.contracts.tasks import create_app
from iot_pipeline.settings import Settings

from support.api_process import start_api, stop_api
from support.clock import event_stamp
from support.isolation import own_pipeline
from support.kafka_io import produce_readings
from support.processing import process_pending
from support.readings import sample_reading
from support.waiting import eventually
from support.workers import start_worker, stop, wait_ready

KEY = "override-worker-test-key"
AUTH = {"X-API-Key": KEY}
HOUR = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
SENSOR = "casa-ovw-01-temperature"
LONG = "casa-ovw-02-temperature"


def _at(minute: int) -> str:
    return (HOUR + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "ovworker") as own:
        produce_readings(
            own,
            [
                sample_reading(
                    event_id=f"ovw-{n}",
                    sensor_id=SENSOR,
                    station_id="casa-ovw-01",
                    seq=n,
                    value=round(20.0 + 0.13 * n, 2),
                    event_time=_at(n),
                )
                for n in range(12)
            ]
            + [  # a reading every 6 hours over the last two days and a half
                sample_reading(
                    event_id=f"ovw-long-{n}",
                    sensor_id=LONG,
                    station_id="casa-ovw-02",
                    seq=n,
                    value=round(18.0 + 0.4 * n, 2),
                    event_time=event_stamp(HOUR - timedelta(hours=6 * n)),
                )
                for n in range(1, 11)
            ],
        )
        process_pending(own, "ovworker-1")
        yield own


@pytest.fixture(scope="module")
def api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    log = tmp_path_factory.mktemp("ovworker") / "worker.log"
    worker = start_worker(settings, "ovworker", log=log)
    process, url = start_api(settings, API_KEY=KEY)
    try:
        wait_ready(create_app(settings), "ovworker")
        with httpx.Client(base_url=url, timeout=30, headers=AUTH) as client:
            yield client
    finally:
        stop_api(process)
        stop(worker)


def _until(api: httpx.Client, override_id: str, status: str) -> dict[str, Any]:
    """The override once the worker brought it to `status` (waits on the condition)."""

    def brought() -> dict[str, Any]:
        doc: dict[str, Any] = api.get(f"/qc/overrides/{override_id}").json()
        assert doc["status"] == status, doc
        return doc

    return eventually(brought, 60, f"override {override_id} {status}", ignoring=(AssertionError,))


def _verdicts(api: httpx.Client) -> list[str]:
    params = {"sensor_id": SENSOR, "start": _at(0), "end": _at(12)}
    items = api.get("/readings", params=params).json()["items"]
    return [item["qc"] for item in sorted(items, key=lambda item: item["event_time"])]


def _hour(api: httpx.Client) -> dict[str, Any]:
    params = {
        "scope": "sensor",
        "key": SENSOR,
        "metric": "temperature",
        "resolution": "1h",
        "start": _at(0),
        "end": _at(60),
    }
    items = eventually(  # windows are written without a refresh
        lambda: api.get("/aggregates", params=params).json()["items"], 30, "the hour's window"
    )
    (item,) = items
    return dict(item)


def _hour_counting(api: httpx.Client, count: int) -> dict[str, Any]:
    """The hour's window once it counts `count` readings (waits on the condition)."""

    def counted() -> dict[str, Any]:
        hour = _hour(api)
        assert hour["count"] == count, hour
        return hour

    return eventually(
        counted, 30, f"the hour's window counting {count}", ignoring=(AssertionError,)
    )


def test_the_worker_settles_an_override_and_its_removal(api: httpx.Client) -> None:
    before = _hour(api)
    assert before["count"] == 12
    body = {
        "sensor_id": SENSOR,
        "start": _at(3),
        "end": _at(7),
        "action": "reject",
        "reason": "serviced between minutes 3 and 7",
    }
    created = api.post("/qc/overrides", json=body)
    assert created.status_code == 201, created.text
    override_id = created.json()["id"]

    applied = _until(api, override_id, "applied")
    assert applied["readings_changed"] == 4
    verdicts = _verdicts(api)
    assert [n for n, qc in enumerate(verdicts) if qc == "B"] == [3, 4, 5, 6]
    after = _hour_counting(api, 8)
    assert (after["count"], after["revision"]) == (8, before["revision"] + 1)

    assert api.delete(f"/qc/overrides/{override_id}").status_code == 202
    removed = _until(api, override_id, "removed")
    assert removed["readings_reverted"] == 4
    assert "B" not in _verdicts(api)
    again = _hour_counting(api, 12)
    assert (again["count"], again["revision"]) == (12, before["revision"] + 2)


def test_a_multi_day_override_is_settled_by_a_chain_of_tasks(api: httpx.Client) -> None:
    body = {
        "sensor_id": LONG,
        "start": event_stamp(HOUR - timedelta(hours=61)),
        "end": event_stamp(HOUR),
        "action": "reject",
        "reason": "two days and a half of drift",
    }
    created = api.post("/qc/overrides", json=body)
    assert created.status_code == 201, created.text
    # three slices of a day, each a task that sends the next
    applied = _until(api, created.json()["id"], "applied")
    assert (applied["readings_changed"], applied["settled_until"]) == (10, None)
