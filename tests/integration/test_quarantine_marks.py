"""A quarantined record that was stored before its range kept failing is marked in the store
(`quarantined`), the quarantine waits in the run state for a clean run to replay it, and the
mark is lifted once it is replayed (the replay itself runs in tests/e2e/test_quarantine.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from confluent_kafka import Producer

from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.contracts.run_state import note_replayed, pending_quarantines
from iot_pipeline.kafka_config import producer_config
from iot_pipeline.orchestration.quarantine import mark_stored, quarantine_range
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.clock import day, event_stamp
from support.ground_truth import document_id, snapshot
from support.isolation import own_pipeline
from support.processing import process_pending
from support.readings import sample_reading

SENSOR = "casa-anfa-01-temperature"


@pytest.fixture
def own(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "qmarks") as pipeline:
        yield pipeline


def test_a_quarantined_record_stored_already_is_marked_until_replayed(own: Settings) -> None:
    producer = Producer(producer_config(own))
    for n in range(5):
        doc = sample_reading(event_id=f"q-{n}", sensor_id=SENSOR, seq=n, value=20.0 + n / 10)
        doc["event_time"] = event_stamp(day(1, 7, n))
        producer.produce(
            own.kafka_sensor_data_topic, json.dumps(doc).encode(), SENSOR.encode(), partition=0
        )
    assert producer.flush(30) == 0
    process_pending(own, "stored")
    culprit = OffsetRange(topic=own.kafka_sensor_data_topic, partition=0, start=2, end=3)
    client = redis.Redis.from_url(own.redis_url)
    store = make_store(own)
    try:
        quarantine_range(own, client, culprit, "RangeFailed: boom", 3, "q", datetime.now(UTC))
        marked = snapshot(store, own.search_index_prefix)
        pending = pending_quarantines(client, own.search_index_prefix, 10)
        assert mark_stored(own, culprit, False) == 1  # what a successful replay does
        note_replayed(client, own.search_index_prefix, [p.range for p in pending])
        after = snapshot(store, own.search_index_prefix)
        left = pending_quarantines(client, own.search_index_prefix, 10)
    finally:
        store.close()
        client.close()
    assert {i for i, d in marked.items() if d.get("quarantined")} == {document_id(SENSOR, "q-2")}
    assert [p.range for p in pending] == [str(culprit)]
    assert not any(d.get("quarantined") for d in after.values())
    assert left == []
