"""A real Celery worker process cleans and indexes offset ranges from the real broker into the
real search node, with dead letters to the real DLQ topic; replays change nothing and a worker
killed mid-task loses nothing once the task is rerun."""

from __future__ import annotations

import json
import math
import signal
import statistics
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from confluent_kafka import Consumer, Producer, TopicPartition

from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.contracts.tasks import PROCESS_RANGE
from iot_pipeline.kafka_config import consumer_config, producer_config
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.clock import day, minute_stamp
from support.ground_truth import aggregates, document_id, expected_ids, offline_windows, snapshot
from support.isolation import own_pipeline
from support.kafka_io import as_produced, consume_all, headers_of, value_of
from support.waiting import eventually
from support.workers import backfill, start_worker, stop, wait_ready

ROOT = Path(__file__).resolve().parents[2]
# The batch clock is fixed once (as the orchestrator does); clock-skewed events lie after it.
BATCH_TIME = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "proc") as own:
        yield own


@pytest.fixture(scope="module")
def produced(settings: Settings) -> list[tuple[int, int, bytes]]:
    """A labelled simulator run in this module's topic: (partition, offset, value)."""
    backfill(
        settings,
        minute_stamp(day(2)),
        8000,
        seed=8,
        interval=30,
        faults=("clock_skew=0.01", "malformed_json=0.01"),
    )
    messages = consume_all(settings, settings.kafka_sensor_data_topic, 10**9, idle_seconds=3)
    return as_produced(messages)


def _tasks(settings: Settings, produced: list[tuple[int, int, bytes]]) -> list[RangeTask]:
    ends: dict[int, int] = {}
    for partition, offset, _ in produced:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return [
        RangeTask.of(
            "batch-1",
            BATCH_TIME,
            OffsetRange(topic=settings.kafka_sensor_data_topic, partition=p, start=0, end=e),
        )
        for p, e in sorted(ends.items())
    ]


def _run(celery_app: Celery, tasks: list[RangeTask]) -> list[dict[str, Any]]:
    results = [celery_app.send_task(PROCESS_RANGE, args=[t.model_dump(mode="json")]) for t in tasks]
    return [r.get(timeout=180) for r in results]


def test_ranges_are_indexed_and_rejects_dead_lettered(
    settings: Settings, celery_app: Celery, produced: list[tuple[int, int, bytes]]
) -> None:
    worker = start_worker(settings, "proc-a")
    try:
        wait_ready(celery_app, "proc-a")
        reports = _run(celery_app, _tasks(settings, produced))
    finally:
        stop(worker)
    assert sum(r["records"] for r in reports) == len(produced)
    store = make_store(settings)
    stored = snapshot(store, settings.search_index_prefix)
    store.close()
    assert set(stored) == expected_ids(produced)
    assert sum(r["indexed"] for r in reports) == len(stored)

    sample = next(iter(stored.values()))
    assert sample["batch_id"] == "batch-1"
    assert sample["ingest_time"] == BATCH_TIME.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert set(sample["kafka"]) == {"topic", "partition", "offset"}
    skewed = [d for d in stored.values() if "future_timestamp" in d["flags"]]
    assert skewed
    assert not any(d["valid"] for d in skewed)
    converted = [d for d in stored.values() if d["original_unit"] == "°F"]
    assert converted
    assert all(d["unit"] == "°C" and "unit_converted" in d["flags"] for d in converted)

    letters = consume_all(settings, settings.dead_letter_topic, 10**9, idle_seconds=3)
    assert len(letters) == sum(r["dead_letters"] for r in reports) > 0
    by_coordinates = {(p, o): v for p, o, v in produced}
    for letter in letters:
        headers = {k: v.decode() for k, v in headers_of(letter).items()}
        assert headers["dlq.reason"] in {"malformed_json", "schema_invalid"}
        assert headers["dlq.stage"] in {"parse", "schema"}
        assert headers["dlq.source.topic"] == settings.kafka_sensor_data_topic
        source = (int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"]))
        assert value_of(letter) == by_coordinates[source]
        assert headers["dlq.batch_id"] == "batch-1"


def test_replaying_the_same_ranges_leaves_the_store_identical(
    settings: Settings, celery_app: Celery, produced: list[tuple[int, int, bytes]]
) -> None:
    store = make_store(settings)
    worker = start_worker(settings, "proc-b")
    try:
        wait_ready(celery_app, "proc-b")
        _run(celery_app, _tasks(settings, produced))
        before = snapshot(store, settings.search_index_prefix)
        aggregates_before = aggregates(store, settings.search_index_prefix)
        letters_before = len(consume_all(settings, settings.dead_letter_topic, 10**9, 3))
        replay = _run(celery_app, _tasks(settings, produced))
        after = snapshot(store, settings.search_index_prefix)
        aggregates_after = aggregates(store, settings.search_index_prefix)
        letters_after = len(consume_all(settings, settings.dead_letter_topic, 10**9, 3))
    finally:
        stop(worker)
        store.close()
    assert before == after
    # one dead letter per bad source record, however often its range is processed
    assert sum(r["dead_letters"] for r in replay) > 0
    assert sum(r["dead_letters_new"] for r in replay) == 0
    assert letters_after == letters_before
    assert set(after) == expected_ids(produced)
    assert aggregates_before == aggregates_after


def test_aggregates_equal_an_offline_computation(settings: Settings) -> None:
    store = make_store(settings)
    readings = snapshot(store, settings.search_index_prefix)
    stored_aggregates = aggregates(store, settings.search_index_prefix)
    store.close()
    truth = offline_windows(readings)
    with_values = {
        (a["scope"], a["key"], a["metric"], a["resolution"], a["window_start"]): a
        for a in stored_aggregates.values()
        if a["count"] > 0
    }
    assert set(with_values) == set(truth)
    for window, values in truth.items():
        doc = with_values[window]
        assert doc["count"] == len(values), window
        assert doc["min"] == min(values)
        assert doc["max"] == max(values)
        assert doc["sum"] == pytest.approx(math.fsum(values), rel=1e-12, abs=1e-6)
        assert doc["mean"] == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-9)
        assert doc["std"] == pytest.approx(statistics.pstdev(values), rel=1e-6, abs=1e-6)
    # a sensor's windows were complete after its partition's one task (replays were no-ops);
    # a district's grew as each partition's task added its sensors
    assert {a["revision"] for a in stored_aggregates.values() if a["scope"] == "sensor"} == {1}
    assert max(a["revision"] for a in stored_aggregates.values()) > 1


def test_a_late_reading_changes_exactly_its_windows(
    settings: Settings, celery_app: Celery, produced: list[tuple[int, int, bytes]]
) -> None:
    store = make_store(settings)
    readings = snapshot(store, settings.search_index_prefix)
    before = aggregates(store, settings.search_index_prefix)
    # a valid reading of a busy sensor, late by a quarter of an hour, in the middle of a minute
    target = sorted(
        (d for d in readings.values() if d["valid"] and d["metric"] == "no2"),
        key=lambda d: d["event_time"],
    )[len(readings) // 40]
    moment = datetime.fromisoformat(target["event_time"]).replace(second=17)
    late = {
        **json.loads(next(v for _, _, v in produced if target["event_id"].encode() in v)),
        "event_id": "late-reading-1",
        "seq": 10**6,
        "event_time": moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "value": round(target["value"] + 0.37, 2),
    }
    producer = Producer(producer_config(settings))
    producer.produce(
        settings.kafka_sensor_data_topic, json.dumps(late).encode(), target["sensor_id"]
    )
    assert producer.flush(30) == 0
    partition = target["kafka"]["partition"]
    start = max(o for p, o, _ in produced if p == partition) + 1
    consumer = Consumer(consumer_config(settings, "test.watermarks"))
    _, end = consumer.get_watermark_offsets(
        TopicPartition(settings.kafka_sensor_data_topic, partition), timeout=10
    )
    consumer.close()
    task = RangeTask.of(
        "batch-late",
        BATCH_TIME,
        OffsetRange(
            topic=settings.kafka_sensor_data_topic, partition=partition, start=start, end=end
        ),
    )
    worker = start_worker(settings, "proc-late")
    try:
        wait_ready(celery_app, "proc-late")
        (report,) = _run(celery_app, [task])
    finally:
        stop(worker)
    after = aggregates(store, settings.search_index_prefix)
    stored = snapshot(store, settings.search_index_prefix)
    store.close()
    assert report["records"] == end - start == 1
    assert stored[document_id(target["sensor_id"], "late-reading-1")]["valid"]
    changed = {k for k in after if after[k] != before.get(k)}
    expected = {
        f"{scope}:{key}:no2:{resolution}:{start_of(moment, resolution)}"
        for scope, key in (("sensor", target["sensor_id"]), ("district", target["district"]))
        for resolution in ("1m", "1h", "1d")
    }
    assert changed == expected
    for key in expected:
        assert after[key]["revision"] == before[key]["revision"] + 1
        assert after[key]["count"] == before[key]["count"] + 1


def start_of(moment: datetime, resolution: str) -> str:
    size = {"1m": 60, "1h": 3600, "1d": 86400}[resolution]
    start = datetime.fromtimestamp(moment.timestamp() // size * size, UTC)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_worker_killed_mid_task_then_rerun_loses_and_duplicates_nothing(
    settings: Settings, celery_app: Celery, produced: list[tuple[int, int, bytes]]
) -> None:
    store = make_store(settings)
    store.delete_indices(store.list_indices(f"{settings.search_index_prefix}-readings-*"))
    largest = max(_tasks(settings, produced), key=lambda t: t.range.size)
    worker = start_worker(settings, "proc-c")
    try:
        wait_ready(celery_app, "proc-c")
        pending = celery_app.send_task(PROCESS_RANGE, args=[largest.model_dump(mode="json")])
        eventually(lambda: pending.state == "STARTED", 60, "the task's start", interval=0.02)
        stop(worker, signal.SIGKILL)  # mid-task: reading, cleaning or indexing
    finally:
        stop(worker, signal.SIGKILL)
    partial = snapshot(store, settings.search_index_prefix)
    expected = expected_ids(produced, largest.range.partition)
    assert len(partial) < len(expected), "the kill happened before the task finished"

    worker = start_worker(settings, "proc-d")
    try:
        wait_ready(celery_app, "proc-d")
        _run(celery_app, [largest])
    finally:
        stop(worker)
    final = snapshot(store, settings.search_index_prefix)
    store.close()
    assert set(final) == expected
    assert all(doc["kafka"]["partition"] == largest.range.partition for doc in final.values())
