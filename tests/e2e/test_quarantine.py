"""A range that fails the same way every time (the fault injection marker in one reading)
is quarantined after `ETL_QUARANTINE_AFTER_FAILURES` runs while the other partitions keep
committing: narrowed down to the one record that makes it fail, the rest of the range is
processed; the run state shows it; once the cause is gone, the next clean run replays the
quarantined range by itself (a dead-letter replay then changes nothing) and the store equals
the ground truth."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from confluent_kafka import Producer

from iot_pipeline.contracts.positions import positions
from iot_pipeline.contracts.run_state import read_state
from iot_pipeline.kafka_config import producer_config
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.clock import day, event_stamp, minute_stamp
from support.dag_runs import run_airflow
from support.ground_truth import assert_aggregates_match, document_id, expected_ids, snapshot
from support.isolation import own_pipeline
from support.kafka_io import as_produced, consume_all, coordinates, headers_of
from support.readings import sample_reading
from support.workers import backfill, settings_env, start_worker, stop, wait_ready

MARKER = "drill-7f3a"
BAD_PARTITION = 4
ATTEMPTS = 3


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(
        test_settings,
        "quarantine",
        etl_task_timeout_seconds=120,
        etl_quarantine_after_failures=ATTEMPTS,
    ) as own:
        yield own


def _committed(settings: Settings) -> dict[int, int]:
    group = positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    return {p.partition: p.committed for p in group}


def _highs(settings: Settings) -> dict[int, int]:
    group = positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    return {p.partition: p.high for p in group}


def _marked_reading(settings: Settings) -> tuple[dict[str, object], int]:
    """A valid reading that carries the marker (in its event id), in the bad partition;
    returns it and its offset."""
    reading = sample_reading(
        event_id=f"{MARKER}-1",
        sensor_id="casa-drill-01-pm25",
        station_id="casa-drill-01",
        metric="pm25",
        value=12.5,
        unit="µg/m³",
        event_time=event_stamp(day(3, 0, 30)),
    )
    offsets: list[int] = []
    producer = Producer(producer_config(settings))
    producer.produce(
        settings.kafka_sensor_data_topic,
        json.dumps(reading).encode(),
        b"casa-drill-01-pm25",
        partition=BAD_PARTITION,
        on_delivery=lambda err, msg: offsets.append(coordinates(msg)[1]),
    )
    assert producer.flush(30) == 0
    return reading, offsets[0]


def test_a_failing_range_is_quarantined_and_replayed_back_once_fixed(
    settings: Settings, celery_app: Celery, airflow_env: dict[str, str]
) -> None:
    backfill(settings, minute_stamp(day(3)), 900, seed=51)
    reading, marked = _marked_reading(settings)
    backfill(settings, minute_stamp(day(3, 1)), 900, seed=52)
    env = {**settings_env(settings), **airflow_env}
    highs = _highs(settings)

    faulty = start_worker(settings, "drill-faulty", FAULT_INJECTION_MARKER=MARKER)
    try:
        wait_ready(celery_app, "drill-faulty")
        runs = [run_airflow(env, "test", "iot_sensor_etl") for _ in range(ATTEMPTS)]
        committed_then = _committed(settings)
    finally:
        stop(faulty)
    state = redis.Redis.from_url(settings.redis_url)
    try:
        status = read_state(state, settings.search_index_prefix, settings.kafka_sensor_data_topic)
    finally:
        state.close()

    # attempts before the last: the run fails visibly, the other partitions commit
    for n, run in enumerate(runs[:-1], start=1):
        assert run["state"] == "failed", run
        assert run["tasks"]["verdict"]["state"] == "failed"
        report = run["tasks"]["report"]["xcom"]
        assert [f.split(":")[0] for f in report["failed_ranges"]] == [
            f"{settings.kafka_sensor_data_topic}[{BAD_PARTITION}]"
        ]
        assert report["consecutive_failed_runs"] == n
    assert runs[0]["tasks"]["report"]["xcom"]["partitions_committed"] == 5
    # the last attempt quarantines the range: the run is still red, but every partition moved
    last = runs[-1]["tasks"]["report"]["xcom"]
    assert runs[-1]["state"] == "failed"
    assert len(last["quarantined_ranges"]) == 1
    assert committed_then == highs
    assert status.quarantined_ranges == 1
    assert status.quarantined_records == 1  # narrowed to the record that fails
    (entry,) = status.quarantines
    assert (entry.partition, entry.start, entry.end) == (BAD_PARTITION, marked, marked + 1)
    assert entry.attempts == ATTEMPTS
    assert "InjectedFault" in entry.error
    assert status.failing == {}  # the partition moved past it
    assert status.consecutive_failed_runs == ATTEMPTS

    letters = consume_all(settings, settings.dead_letter_topic, 10**9, idle_seconds=3)
    quarantined = [
        m
        for m in letters
        if headers_of(m)["dlq.reason"] == b"range_failed"
        and headers_of(m)["dlq.source.partition"] == str(BAD_PARTITION).encode()
    ]
    assert [int(headers_of(m)["dlq.source.offset"]) for m in quarantined] == [marked]
    produced = consume_all(settings, settings.kafka_sensor_data_topic, 10**9, idle_seconds=3)
    expected = expected_ids(as_produced(produced))
    marked_id = document_id(str(reading["sensor_id"]), str(reading["event_id"]))
    store = make_store(settings)
    try:  # everything else of the failing range is indexed already
        assert set(snapshot(store, settings.search_index_prefix)) == expected - {marked_id}
    finally:
        store.close()

    # the cause is gone: the next clean run replays the quarantined range by itself, and a
    # dead-letter replay afterwards changes nothing
    fixed = start_worker(settings, "drill-fixed")
    try:
        wait_ready(celery_app, "drill-fixed")
        after = run_airflow(env, "test", "iot_sensor_etl")
        replay = run_airflow(env, "test", "iot_dead_letter_replay")
    finally:
        stop(fixed)
    assert after["state"] == "success", after
    assert after["tasks"]["report"]["xcom"]["consecutive_failed_runs"] == 0
    assert after["tasks"]["replay_quarantined"]["xcom"]["replayed"] == [entry.range]
    assert replay["state"] == "success", replay
    store = make_store(settings)
    try:
        stored = snapshot(store, settings.search_index_prefix)
        assert set(stored) == expected
        assert marked_id in stored
        assert assert_aggregates_match(store, settings.search_index_prefix) > 100
    finally:
        store.close()
