"""`iot_sensor_etl` for real: `dag.test()` against Kafka, a Celery worker and the search node.

A batch is processed end to end and its offsets committed; a second run changes nothing; a
batch whose ranges fail (the worker cannot reach the search node) commits nothing, and the
run after recovery leaves the store equal to the ground truth, without duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from iot_pipeline.contracts.positions import positions
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.clock import day, minute_stamp
from support.dag_runs import run_airflow
from support.ground_truth import expected_ids, snapshot
from support.isolation import own_pipeline
from support.kafka_io import as_produced, consume_all
from support.workers import backfill, settings_env, start_worker, stop, wait_ready


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "etl", etl_task_timeout_seconds=45) as own:
        yield own


def _produce(settings: Settings, start: str, count: int, seed: int) -> None:
    backfill(settings, start, count, seed, interval=30, faults=("malformed_json=0.01",))


def _run_dag(settings: Settings, airflow_env: dict[str, str]) -> dict[str, Any]:
    return run_airflow({**settings_env(settings), **airflow_env}, "test", "iot_sensor_etl")


def _produced(settings: Settings) -> list[tuple[int, int, bytes]]:
    messages = consume_all(settings, settings.kafka_sensor_data_topic, 10**9, idle_seconds=3)
    return as_produced(messages)


def _committed(settings: Settings) -> dict[int, int]:
    return {
        p.partition: p.committed
        for p in positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    }


def _highs(settings: Settings) -> dict[int, int]:
    return {
        p.partition: p.high
        for p in positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    }


def test_a_run_indexes_the_batch_commits_and_a_second_run_changes_nothing(
    settings: Settings, celery_app: Celery, airflow_env: dict[str, str]
) -> None:
    _produce(settings, minute_stamp(day(4)), 3000, seed=21)
    worker = start_worker(settings, "etl-a")
    try:
        wait_ready(celery_app, "etl-a")
        first = _run_dag(settings, airflow_env)
        assert first["state"] == "success", first
        report = first["tasks"]["report"]["xcom"]
        produced = _produced(settings)
        assert report["records_read"] == len(produced) == sum(_highs(settings).values())
        assert report["lag_after"] == 0
        assert report["dead_lettered"] > 0
        assert _committed(settings) == _highs(settings)

        store = make_store(settings)
        stored = snapshot(store, settings.search_index_prefix)
        assert set(stored) == expected_ids(produced)

        second = _run_dag(settings, airflow_env)
        assert second["state"] == "success", second
        assert second["tasks"]["report"]["xcom"]["records_read"] == 0
        assert second["tasks"]["plan"]["xcom"]["ranges"] == []
        assert snapshot(store, settings.search_index_prefix) == stored
        store.close()
    finally:
        stop(worker)


def test_failed_ranges_commit_nothing_and_the_next_run_catches_up(
    settings: Settings, celery_app: Celery, airflow_env: dict[str, str]
) -> None:
    before = _committed(settings)
    _produce(settings, minute_stamp(day(4, 12)), 2000, seed=22)
    # A worker that cannot reach the search node: every range fails (and keeps retrying).
    broken = start_worker(settings, "etl-broken", SEARCH_URL="http://127.0.0.1:9")
    try:
        wait_ready(celery_app, "etl-broken")
        failed = _run_dag(settings, airflow_env)
    finally:
        stop(broken)
        # its retries, handed back to the queue at shutdown, would run later in this module
        # and make the dead-letter counts below move; they are harmless, but not ours
        celery_app.control.purge()
    # the run fails visibly (its verdict), and no partition whose range failed moves
    assert failed["state"] == "failed", failed
    assert failed["tasks"]["process"]["state"] == "success"
    assert failed["tasks"]["commit"]["xcom"] == 0
    assert failed["tasks"]["verdict"]["state"] == "failed"
    report = failed["tasks"]["report"]["xcom"]
    assert len(report["failed_ranges"]) == 6
    assert report["quarantined_ranges"] == []  # one failure is not enough to quarantine
    assert _committed(settings) == before

    worker = start_worker(settings, "etl-b")
    try:
        wait_ready(celery_app, "etl-b")
        recovered = _run_dag(settings, airflow_env)
    finally:
        stop(worker)
    assert recovered["state"] == "success", recovered
    assert recovered["tasks"]["report"]["xcom"]["lag_after"] == 0
    assert _committed(settings) == _highs(settings)
    produced = _produced(settings)
    store = make_store(settings)
    stored = snapshot(store, settings.search_index_prefix)
    store.close()
    assert set(stored) == expected_ids(produced)  # ids are unique keys: no duplicates
    offsets = {(d["kafka"]["partition"], d["kafka"]["offset"]) for d in stored.values()}
    assert len(offsets) == len(stored)


def test_replays_reprocess_idempotently_and_dead_letters_stay_once(
    settings: Settings, celery_app: Celery, airflow_env: dict[str, str]
) -> None:
    store = make_store(settings)
    before = snapshot(store, settings.search_index_prefix)
    assert before, "runs after the ETL tests of this module"
    env = {**settings_env(settings), **airflow_env}

    def dead_letters() -> int:
        return len(consume_all(settings, settings.dead_letter_topic, 10**9, idle_seconds=3))

    letters_before = dead_letters()
    worker = start_worker(settings, "etl-replay")
    try:
        wait_ready(celery_app, "etl-replay")
        replay = run_airflow(
            env,
            "test",
            "iot_replay",
            json.dumps({"topic": settings.kafka_sensor_data_topic, "partition": 2}),
        )
        letters = dead_letters()
        dead = run_airflow(env, "test", "iot_dead_letter_replay")
    finally:
        stop(worker)
    assert replay["state"] == "success", replay
    replayed = replay["tasks"]["process"]["xcom"]
    assert replayed["ranges"] >= 1
    assert replayed["records"] == _highs(settings)[2]
    assert dead["state"] == "success", dead
    summary = dead["tasks"]["process"]["xcom"]
    # replaying a source range writes no dead letter its first run already wrote
    assert letters == letters_before > 0
    # the malformed records fail again, and are not appended to the dead-letter topic again
    assert summary["still_dead"] == summary["records"] == letters
    assert dead_letters() == letters
    # same documents; only the provenance of the replayed ones says which batch wrote them
    assert _content(snapshot(store, settings.search_index_prefix)) == _content(before)
    store.close()


def _content(docs: dict[str, Any]) -> dict[str, Any]:
    provenance = ("batch_id", "ingest_time")
    return {i: {k: v for k, v in d.items() if k not in provenance} for i, d in docs.items()}
