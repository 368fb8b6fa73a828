"""The pipeline's least-privilege logins on a real engine with security enabled (OpenSearch's
security plugin; tests/support/secured_search.py): the roles `container.search_users` gives
each process, created through the plugin's API as a deployment would, and every API route and
worker write exercised with the login the deployment gives it. A read-only login is refused
where it must be, and its refusal is the engine's (StoreRefused), never a dead letter."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery
from opensearchpy import OpenSearch
from pydantic import SecretStr

from iot_pipeline.container.search_users import API, LOGINS, READER, WRITER, apply_opensearch
from iot_pipeline.contracts.positions import positions
from iot_pipeline.contracts.ranges import RangeTask
from iot_pipeline.contracts.tasks import SETTLE_OVERRIDE
from iot_pipeline.errors import StoreRefused
from iot_pipeline.orchestration.offsets import plan_ranges
from iot_pipeline.processing.pipeline import process_range
from iot_pipeline.settings import Settings, StackSettings
from iot_pipeline.storage import make_store

from support.api_process import api_client
from support.clock import day, event_stamp, minute_stamp
from support.dag_runs import run_airflow
from support.ground_truth import assert_stored_once_and_exact
from support.isolation import own_pipeline
from support.kafka_io import consume_all
from support.processing import process_pending
from support.secured_search import SecuredNode, secured_node
from support.workers import (
    backfill,
    drop_queued,
    make_status,
    settings_env,
    start_worker,
    stop,
    wait_ready,
)

KEY = "secured-engine-test-key"
AUTH = {"X-API-Key": KEY}
SUFFIX = "secured"


@pytest.fixture(scope="module")
def node(
    test_settings: StackSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredNode]:
    with secured_node(test_settings, Path(tmp_path_factory.mktemp("secured"))) as started:
        yield started


@pytest.fixture(scope="module")
def passwords(node: SecuredNode, test_settings: Settings) -> dict[str, str]:
    """The pipeline's roles and users on the node, made by the admin through the plugin."""
    prefix = f"{test_settings.search_index_prefix}-{SUFFIX}"
    made = {login.user: secrets.token_urlsafe(24) for login in LOGINS}
    client = OpenSearch(node.url, http_auth=node.admin)
    try:
        assert len(apply_opensearch(client, prefix, made)) == len(LOGINS)
    finally:
        client.close()
    return made


def _as(settings: Settings, node: SecuredNode, user: str, password: str) -> Settings:
    return settings.model_copy(
        update={
            "search_url": node.url,
            "search_username": user,
            "search_password": SecretStr(password),
        }
    )


@pytest.fixture(scope="module")
def writer(
    test_settings: Settings, node: SecuredNode, passwords: dict[str, str]
) -> Iterator[Settings]:
    """The worker's deployment: its own pipeline on the secured node, as `iot_writer` (which
    also applies the templates and, at the end, deletes the indices)."""
    with own_pipeline(_as(test_settings, node, WRITER, passwords[WRITER]), SUFFIX) as own:
        backfill(own, minute_stamp(day(1, 8)), 600, seed=81, base_faults="none")
        yield own


@pytest.fixture(scope="module")
def settings(writer: Settings) -> Settings:
    """The module's pipeline (what the shared `celery_app` fixture takes)."""
    return writer


def _login(settings: Settings, user: str, passwords: dict[str, str]) -> Settings:
    return settings.model_copy(
        update={"search_username": user, "search_password": SecretStr(passwords[user])}
    )


def test_the_worker_writes_everything_with_its_login(writer: Settings) -> None:
    """Readings, registry, flags found later, windows: every write of a range as
    `iot_writer`; the store equals what was produced, the windows an offline computation."""
    process_pending(writer, "secured-1")
    assert_stored_once_and_exact(writer, windows_at_least=11)


def test_every_api_route_works_with_the_api_login(
    writer: Settings, passwords: dict[str, str]
) -> None:
    api_settings = _login(writer, API, passwords)
    sensor = "casa-anfa-01-temperature"
    start, end = event_stamp(day(1, 8)), event_stamp(day(1, 9))
    try:
        with api_client(api_settings, API_KEY=KEY) as api:
            reads: list[tuple[str, dict[str, str | int]]] = [
                ("/health", {}),
                ("/ready", {}),
                ("/health/pipeline", {}),
                ("/pipeline/status", {}),
                ("/metrics", {}),
                ("/sensors", {}),
                (f"/sensors/{sensor}", {}),
                ("/readings", {"start": start, "end": end}),
                ("/readings/latest", {"within_hours": 48}),
                ("/aggregates", {"metric": "temperature", "start": start, "end": end}),
                ("/aqi", {"start": start, "end": end}),
                ("/qc/overrides", {}),
            ]
            for path, params in reads:
                answer = api.get(path, params=params, headers=AUTH)
                assert answer.status_code == 200, (path, answer.text)
            override = api.post(
                "/qc/overrides",
                json={
                    "sensor_id": sensor,
                    "start": start,
                    "end": end,
                    "action": "reject",
                    "reason": "secured engine test",
                },
                headers=AUTH,
            )
            assert override.status_code == 201, override.text
            made = override.json()["id"]
            assert api.get(f"/qc/overrides/{made}", headers=AUTH).status_code == 200
            assert api.delete(f"/qc/overrides/{made}", headers=AUTH).status_code == 202
            declared = api.put(f"/sensors/{sensor}/metadata", json={"interval_s": 60}, headers=AUTH)
            assert declared.status_code == 200, declared.text
            assert api.get(f"/sensors/{sensor}/metadata", headers=AUTH).status_code == 200
            removed = api.delete(f"/sensors/{sensor}/metadata", headers=AUTH)
            assert removed.status_code in (200, 204), removed.text
    finally:
        drop_queued(writer, SETTLE_OVERRIDE)  # no worker of this module settles them


def test_a_read_only_login_is_refused_where_it_must_be(
    writer: Settings, passwords: dict[str, str]
) -> None:
    """`iot_reader` reads; its writes are refused by the engine: the API's write routes
    answer a problem, a range it would store fails with StoreRefused and nothing is
    dead-lettered."""
    reader = _login(writer, READER, passwords)
    with api_client(reader, API_KEY=KEY) as api:
        assert api.get("/readings", headers=AUTH).status_code == 200
        refused = api.put(
            "/sensors/casa-anfa-02-temperature/metadata", json={"interval_s": 60}, headers=AUTH
        )
        assert refused.status_code == 502, refused.text
        assert "refused this API's login" in refused.json()["detail"]
    backfill(writer, minute_stamp(day(1, 12)), 100, seed=82, base_faults="none")
    (pending, *_) = plan_ranges(
        writer, writer.kafka_sensor_data_topic, writer.etl_consumer_group, 10**9
    )
    store = make_store(reader)
    state = redis.Redis.from_url(writer.redis_url)
    try:
        with pytest.raises(StoreRefused, match="403"):
            process_range(reader, store, state, RangeTask.of("refused", day(0), pending))
    finally:
        state.close()
        store.close()
    assert consume_all(writer, writer.dead_letter_topic, 10**9, idle_seconds=3) == []


def test_the_writer_cannot_touch_another_prefix(
    node: SecuredNode, passwords: dict[str, str]
) -> None:
    answer = httpx.put(
        f"{node.url}/other-readings-2026.01.01/_doc/1",
        json={"value": 1},
        auth=(WRITER, passwords[WRITER]),
        timeout=10,
    )
    assert answer.status_code == 403, answer.text


def _committed(settings: Settings) -> dict[int, int]:
    group = positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    return {p.partition: p.committed for p in group}


def test_a_worker_login_without_write_privilege_stalls_visibly_and_loses_nothing(
    writer: Settings,
    passwords: dict[str, str],
    celery_app: Celery,
    airflow_env: dict[str, str],
) -> None:
    """The drill with a worker logged in as `iot_reader`: two ETL runs of the real DAG,
    nothing dead-lettered or quarantined, the cause named in `/health/pipeline` (503) and
    `make status` (exit 3); with the right login back, everything is stored once."""
    reader = _login(writer, READER, passwords)
    backfill(writer, minute_stamp(day(1, 14)), 300, seed=83, base_faults="none")
    env = {**settings_env(reader, ETL_QUARANTINE_AFTER_FAILURES="1"), **airflow_env}
    held = _committed(writer)
    worker = start_worker(reader, "secured-reader")
    try:
        wait_ready(celery_app, "secured-reader")
        runs = [run_airflow(env, "test", "iot_sensor_etl") for _ in range(2)]
        with api_client(reader, API_KEY=KEY) as api:
            health = api.get("/health/pipeline")
        status = make_status(reader)
        committed = _committed(writer)
    finally:
        stop(worker)
    worker = start_worker(writer, "secured-writer")
    try:
        wait_ready(celery_app, "secured-writer")
        after = run_airflow({**settings_env(writer), **airflow_env}, "test", "iot_sensor_etl")
    finally:
        stop(worker)
    for run in runs:
        assert run["state"] == "failed", run
        assert run["tasks"]["report"]["xcom"]["quarantined_ranges"] == []
    assert committed == held
    assert health.status_code == 503, health.text
    detail = health.json()["detail"]
    assert "403" in detail, detail
    assert "no permissions" in detail, detail  # the engine's own words
    assert status.returncode == 3, status.stdout
    assert "REFUSED" in status.stdout
    assert after["state"] == "success", after
    assert consume_all(writer, writer.dead_letter_topic, 10**9, idle_seconds=3) == []
    assert_stored_once_and_exact(writer, windows_at_least=11)
