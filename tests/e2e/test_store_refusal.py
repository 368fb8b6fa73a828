"""Drill: the search engine refuses the pipeline's writes for a reason of its own while
readings flow (the flood-stage watermark of a full disk write-blocks the day's index, or the
engine refuses to create it). A record is bad only when the record is the reason: nothing is
dead-lettered or quarantined, the stall and its cause show in `/health/pipeline` and
`make status` at once, and when the cause is lifted every reading is indexed exactly once and
the windows equal an offline computation."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from celery import Celery

from iot_pipeline.contracts.positions import positions
from iot_pipeline.settings import Settings

from support.api_process import start_api, stop_api
from support.clock import day, minute_stamp
from support.dag_runs import run_airflow
from support.ground_truth import assert_stored_once_and_exact
from support.isolation import own_pipeline
from support.kafka_io import consume_all
from support.workers import backfill, make_status, settings_env, start_worker, stop, wait_ready


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "refusal", etl_task_timeout_seconds=120) as own:
        yield own


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[httpx.Client]:
    process, url = start_api(settings)
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client
    stop_api(process)


def _engine(settings: Settings, method: str, path: str, body: object) -> None:
    answer = httpx.request(method, f"{settings.search_url}{path}", json=body, timeout=30)
    assert answer.status_code == 200, answer.text


def _flood_stage(settings: Settings, days_ago: int) -> tuple[Callable[[], None], ...]:
    """Write-block the day's readings index as the flood-stage watermark does (429)."""
    index = f"/{settings.search_index_prefix}-readings-{day(days_ago):%Y.%m.%d}/_settings"
    return (
        lambda: _engine(settings, "PUT", index, {"index.blocks.read_only_allow_delete": True}),
        lambda: _engine(settings, "PUT", index, {"index.blocks.read_only_allow_delete": None}),
    )


def _no_index_creation(settings: Settings, days_ago: int) -> tuple[Callable[[], None], ...]:
    """The engine refuses to create the pipeline's readings indices (404)."""
    pattern = f"-{settings.search_index_prefix}-readings-*,+*"

    def refuse() -> None:
        body = {"persistent": {"action.auto_create_index": pattern}}
        _engine(settings, "PUT", "/_cluster/settings", body)

    def allow() -> None:
        _engine(
            settings,
            "PUT",
            "/_cluster/settings",
            {"persistent": {"action.auto_create_index": None}},
        )

    return refuse, allow


def _committed(settings: Settings) -> dict[int, int]:
    group = positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    return {p.partition: p.committed for p in group}


@pytest.mark.parametrize(
    ("fault", "first_day", "refused_day", "cause"),
    [
        (_flood_stage, 2, 2, "429 cluster_block_exception"),
        (_no_index_creation, 3, 4, "404 index_not_found_exception"),
    ],
)
def test_a_refusing_engine_stalls_visibly_and_loses_nothing(
    settings: Settings,
    celery_app: Celery,
    airflow_env: dict[str, str],
    api: httpx.Client,
    fault: Callable[[Settings, int], tuple[Callable[[], None], Callable[[], None]]],
    first_day: int,
    refused_day: int,
    cause: str,
) -> None:
    # quarantine after a single failure: a refusal must never get that far
    env = {**settings_env(settings, ETL_QUARANTINE_AFTER_FAILURES="1"), **airflow_env}
    apply, lift = fault(settings, refused_day)
    worker = start_worker(settings, f"refusal-{refused_day}")
    try:
        wait_ready(celery_app, f"refusal-{refused_day}")
        backfill(
            settings, minute_stamp(day(first_day, 6)), 600, seed=60 + first_day, base_faults="none"
        )
        first = run_airflow(env, "test", "iot_sensor_etl")
        assert first["state"] == "success", first
        apply()
        try:
            backfill(
                settings,
                minute_stamp(day(refused_day, 9)),
                600,
                seed=70 + refused_day,
                base_faults="none",
            )
            held = _committed(settings)
            runs, health, statuses = [], [], []
            for _ in range(2):  # two ETL intervals
                runs.append(run_airflow(env, "test", "iot_sensor_etl"))
                health.append(api.get("/health/pipeline"))
                statuses.append(make_status(settings))
            status = api.get("/pipeline/status").json()
            metrics = api.get("/metrics").text
            committed_while_refused = _committed(settings)
        finally:
            lift()
        after = run_airflow(env, "test", "iot_sensor_etl")
        healed = api.get("/health/pipeline")
        healed_status = make_status(settings)
    finally:
        stop(worker)

    for run in runs:  # each run fails visibly, nothing quarantined
        assert run["state"] == "failed", run
        report = run["tasks"]["report"]["xcom"]
        assert report["failed_ranges"]
        assert report["quarantined_ranges"] == []
    assert committed_while_refused == held  # the refused partitions hold
    # the cause, named, at once (not after the stall age)
    for answer in health:
        assert answer.status_code == 503, answer.text
        assert answer.json()["status"] == "refused"
        assert cause in answer.json()["detail"]
    for shown in statuses:
        assert shown.returncode == 3, shown.stdout + shown.stderr
        assert "REFUSED" in shown.stdout
        assert cause in shown.stdout
    assert cause in status["store_refusal"]["error"]
    assert "iot_pipeline_store_refusing 1.0" in metrics

    # lifted: the held readings are indexed exactly once, the windows are exact
    assert after["state"] == "success", after
    assert healed.status_code == 200, healed.text
    assert "REFUSED" not in healed_status.stdout
    assert consume_all(settings, settings.dead_letter_topic, 10**9, idle_seconds=3) == []
    assert_stored_once_and_exact(settings, windows_at_least=101)
