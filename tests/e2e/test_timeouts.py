"""A timeout never quarantines good readings: a range that outlives the run's task timeout
(a large backlog on a slow engine) while another partition's range succeeds is held, not
narrowed or dead-lettered, even with quarantine after a single failure; given time, every
reading is stored once and the windows are exact."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from celery import Celery
from confluent_kafka import Producer

from iot_pipeline.kafka_config import producer_config
from iot_pipeline.orchestration.etl import commit_batch, plan_batch, process_batch
from iot_pipeline.settings import Settings

from support.clock import day, event_stamp
from support.ground_truth import assert_stored_once_and_exact
from support.isolation import own_pipeline
from support.kafka_io import consume_all
from support.readings import sample_reading
from support.workers import start_worker, stop, wait_ready

BIG = 30_000  # readings in partition 0: many seconds of work, far beyond the timeout
SMALL = 20  # readings in partition 1: done well within it


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(
        test_settings,
        "timeouts",
        # the run waits 3 s: the small range is done well within it even on a loaded machine
        # (at 1 s, two polls of the results, it sometimes timed out too), the big one never
        etl_task_timeout_seconds=3,
        etl_quarantine_after_failures=1,
        etl_range_records=BIG,
        etl_max_records_per_partition=BIG,
    ) as own:
        yield own


def _produce(settings: Settings) -> None:
    producer = Producer(producer_config(settings))
    for partition, count in ((0, BIG), (1, SMALL)):
        for n in range(count):
            sensor = f"casa-anfa-{partition}{n % 50:02d}-temperature"
            doc = sample_reading(
                event_id=f"t-{partition}-{n}",
                sensor_id=sensor,
                station_id=sensor.removesuffix("-temperature"),
                seq=n,
                value=20.0 + (n % 13) / 10,
                event_time=event_stamp(day(2, 1, n // 50)),
            )
            producer.produce(
                settings.kafka_sensor_data_topic,
                json.dumps(doc).encode(),
                sensor.encode(),
                partition=partition,
            )
            producer.poll(0)
    assert producer.flush(60) == 0


def test_a_range_that_times_out_is_held_never_quarantined(
    settings: Settings, celery_app: Celery
) -> None:
    _produce(settings)
    # the hurried timeout is the orchestrator's (below the setting's floor); workers keep theirs
    workers = [
        start_worker(settings, name, ETL_TASK_TIMEOUT_SECONDS="900")
        for name in ("timeout-a", "timeout-b")
    ]
    try:
        for name in ("timeout-a", "timeout-b"):
            wait_ready(celery_app, name)
        summaries = []
        for n in range(2):  # two runs: past the quarantine threshold of one failure
            summary = process_batch(settings, plan_batch(settings, f"hurried-{n}"))
            commit_batch(settings, summary)
            summaries.append(summary)
        patient = settings.model_copy(update={"etl_task_timeout_seconds": 600})
        final = process_batch(patient, plan_batch(patient, "patient"))
        commit_batch(patient, final)
    finally:
        for worker in workers:
            stop(worker)
    for summary in summaries:
        assert summary.quarantined == []
        assert [f.kind for f in summary.failures] == ["timed_out"], summary.failures
        assert [d.partition for d in summary.done] in ([1], [])  # the small one went on
    assert summaries[0].done  # not every range failed: quarantine was possible
    assert final.failures == []
    assert consume_all(settings, settings.dead_letter_topic, 10**9, idle_seconds=3) == []
    assert_stored_once_and_exact(settings, windows_at_least=11)
