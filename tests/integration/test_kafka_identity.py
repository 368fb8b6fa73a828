"""Kafka identity on the real broker: a topic deleted and created again under the same name
starts clean (its new records are neither skipped nor taken for the old ones), records that
retention deleted before processing are counted as lost, a commit never moves an offset
backwards, and the store keeps one copy of an event whatever the cleaner remembers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import KafkaException, NewTopic

from iot_pipeline.cleaning.state import SEEN_IDS
from iot_pipeline.contracts.positions import positions
from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.contracts.reports import BatchSummary, RangeReport
from iot_pipeline.contracts.run_state import read_state
from iot_pipeline.kafka_config import producer_config
from iot_pipeline.orchestration.etl import commit_batch, plan_batch
from iot_pipeline.orchestration.offsets import commit_ranges
from iot_pipeline.processing.pipeline import process_range
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.clock import day, event_stamp
from support.ground_truth import document_id, snapshot
from support.isolation import own_pipeline
from support.kafka_io import consume_all, value_of
from support.readings import sample_reading
from support.waiting import eventually


@pytest.fixture
def own(test_settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    with own_pipeline(test_settings, f"id{request.node.name[5:14]}") as pipeline:
        yield pipeline


def _reading(n: int, sensor: str = "casa-anfa-01-temperature") -> bytes:
    moment = day(2, 6, n // 60).replace(second=n % 60)
    doc = sample_reading(event_id=f"ev-{n}", sensor_id=sensor, seq=n, value=20.0 + (n % 7) / 10)
    return json.dumps({**doc, "event_time": event_stamp(moment)}).encode()


def _produce(settings: Settings, values: list[bytes], partition: int = 0) -> None:
    producer = Producer(producer_config(settings))
    for value in values:
        producer.produce(
            settings.kafka_sensor_data_topic,
            value,
            b"casa-anfa-01-temperature",
            partition=partition,
        )
    assert producer.flush(30) == 0


def _batch(settings: Settings, name: str) -> list[RangeReport]:
    """One ETL run done in the test process: plan, process each range, commit."""
    plan = plan_batch(settings, name)
    store = make_store(settings)
    state = redis.Redis.from_url(settings.redis_url)
    try:
        reports = [
            process_range(settings, store, state, RangeTask.of(plan.batch_id, plan.ingest_time, r))
            for r in plan.ranges
        ]
    finally:
        state.close()
        store.close()
    commit_batch(settings, BatchSummary(batch_id=plan.batch_id, done=plan.ranges))
    return reports


def _recreate(settings: Settings) -> None:
    """Delete the sensor topic and create it again under the same name (waiting for Kafka
    to finish the deletion, which it does in the background)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    topic = settings.kafka_sensor_data_topic
    admin.delete_topics([topic])[topic].result(30)

    def created() -> bool:
        new = NewTopic(topic, num_partitions=6, replication_factor=1)
        admin.create_topics([new])[topic].result(30)  # KafkaException: still being deleted
        return True

    eventually(created, 60, f"{topic} created again", interval=0.5, ignoring=(KafkaException,))


def _state(settings: Settings) -> object:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return read_state(client, settings.search_index_prefix, settings.kafka_sensor_data_topic)
    finally:
        client.close()


def test_a_topic_deleted_and_recreated_starts_clean_and_loses_no_new_record(
    own: Settings,
) -> None:
    old = [_reading(n) for n in range(10)]
    old[5] = b"not json (old topic)"
    _produce(own, old)
    _batch(own, "before")
    _recreate(own)
    new = [_reading(100 + n) for n in range(6)]
    new[5] = b"not json (new topic)"  # the same offset as the old topic's dead letter
    _produce(own, new)
    reports = _batch(own, "after")

    store = make_store(own)
    try:
        stored = snapshot(store, own.search_index_prefix)
    finally:
        store.close()
    assert sum(r.records for r in reports) == 6  # every new record, from offset 0
    assert {document_id("casa-anfa-01-temperature", f"ev-{100 + n}") for n in range(5)} <= set(
        stored
    )
    letters = consume_all(own, own.dead_letter_topic, 10**9, idle_seconds=3)
    assert sorted(value_of(m) for m in letters) == [
        b"not json (new topic)",
        b"not json (old topic)",
    ]
    state = _state(own)
    assert state.topic_recreations == 1  # type: ignore[attr-defined]
    committed = {
        p.partition: p.committed
        for p in positions(own, own.kafka_sensor_data_topic, own.etl_consumer_group)
    }
    assert committed[0] == 6


def test_records_deleted_by_retention_before_processing_are_counted_as_lost(
    own: Settings,
) -> None:
    _produce(own, [_reading(n) for n in range(10)])
    _batch(own, "first")
    _produce(own, [_reading(10 + n) for n in range(20)])
    admin = AdminClient({"bootstrap.servers": own.kafka_brokers})
    gone = TopicPartition(own.kafka_sensor_data_topic, 0, 25)  # offsets 10..24 never processed
    for future in admin.delete_records([gone]).values():
        future.result(30)
    reports = _batch(own, "after-retention")
    _batch(own, "again")  # nothing new: the gap is not counted twice
    assert sum(r.records for r in reports) == 5
    assert _state(own).lost_records == 15  # type: ignore[attr-defined]


def test_a_commit_never_moves_an_offset_backwards(own: Settings) -> None:
    _produce(own, [_reading(n) for n in range(10)])
    _batch(own, "first")
    topic = own.kafka_sensor_data_topic
    stale = OffsetRange(topic=topic, partition=0, start=0, end=4)
    assert commit_ranges(own, own.etl_consumer_group, [stale]) == []
    committed = {p.partition: p.committed for p in positions(own, topic, own.etl_consumer_group)}
    assert committed[0] == 10


def test_a_duplicate_older_than_the_id_memory_is_not_stored_twice(own: Settings) -> None:
    """The cleaner remembers the last SEEN_IDS event ids of a sensor; the store's `create`
    catches an older duplicate: the first copy stays as stored, nothing is written again."""
    first = _reading(0)
    _produce(own, [first])
    _batch(own, "original")
    _produce(own, [_reading(1 + n) for n in range(SEEN_IDS + 50)])
    _batch(own, "many-later")
    _produce(own, [first])
    reports = _batch(own, "late-duplicate")
    store = make_store(own)
    try:
        stored = snapshot(store, own.search_index_prefix)
    finally:
        store.close()
    kept = stored[document_id("casa-anfa-01-temperature", "ev-0")]
    assert kept["batch_id"] == "original"
    assert [r.duplicates for r in reports] == [1]
    assert [r.dead_letters for r in reports] == [0]
    assert len(stored) == SEEN_IDS + 51
