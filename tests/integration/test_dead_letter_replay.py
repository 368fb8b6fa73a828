"""Faithful dead-letter replays on the real stack: a quarantined reading replayed from the
dead-letter topic is cleaned with its source partition's state (the verdict the live path
gives it), a replay never overwrites a stored reading, and a letter that fails again for
another reason gets a letter with its real reason, once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from confluent_kafka import Producer

from iot_pipeline.cleaning import RawRecord, clean_batch
from iot_pipeline.cleaning.batch import DeadLetter
from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.contracts.reports import RangeReport
from iot_pipeline.kafka_config import producer_config
from iot_pipeline.processing.dead_letters import send_dead_letters
from iot_pipeline.processing.pipeline import cleaning_policy, process_range
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store
from iot_pipeline.vocabulary import SPIKE

from support.clock import day, event_stamp
from support.ground_truth import document_id, snapshot
from support.isolation import own_pipeline
from support.kafka_io import consume_all
from support.readings import sample_reading

SENSOR = "casa-anfa-01-temperature"
NOW = datetime.now(UTC)


@pytest.fixture
def own(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "letters") as pipeline:
        yield pipeline


def _reading(n: int, value: float) -> bytes:
    doc = sample_reading(event_id=f"ev-{n}", sensor_id=SENSOR, seq=n, value=value)
    return json.dumps({**doc, "event_time": event_stamp(day(2, 6, n))}).encode()


def _process(settings: Settings, offsets: OffsetRange, batch: str, replay: bool) -> RangeReport:
    store = make_store(settings)
    state = redis.Redis.from_url(settings.redis_url)
    try:
        return process_range(settings, store, state, RangeTask.of(batch, NOW, offsets, replay))
    finally:
        state.close()
        store.close()


def test_a_replayed_letter_gets_the_live_verdict_and_never_overwrites(own: Settings) -> None:
    values = [_reading(n, 20.0 + n / 10) for n in range(10)]
    spike = _reading(10, 35.0)  # far off its sensor's recent readings: the live path flags it
    broken = b'{"sensor_id": "casa-anfa-01-temperature", "value": '  # quarantined, then bad
    producer = Producer(producer_config(own))
    for value in [*values, spike, broken, _reading(12, 21.2)]:
        producer.produce(own.kafka_sensor_data_topic, value, SENSOR.encode(), partition=0)
    assert producer.flush(30) == 0
    topic = own.kafka_sensor_data_topic
    # the live path: offsets 10 and 11 were quarantined, the partition went on past them
    _process(own, OffsetRange(topic=topic, partition=0, start=0, end=10), "live-1", False)
    _process(own, OffsetRange(topic=topic, partition=0, start=12, end=13), "live-2", False)
    quarantined = [
        DeadLetter(
            RawRecord(value, topic, 0, offset, SENSOR.encode()), "range_failed", "range", "x"
        )
        for offset, value in ((10, spike), (11, broken))
    ]
    send_dead_letters(own, quarantined, "live-2", NOW)

    letters = OffsetRange(topic=own.dead_letter_topic, partition=0, start=0, end=2)
    first = _process(own, letters, "replay-1", True)
    again = _process(own, letters, "replay-2", True)

    records = [RawRecord(v, topic, 0, n, SENSOR.encode()) for n, v in enumerate([*values, spike])]
    live = clean_batch(records, {}, NOW, cleaning_policy(own)).readings[-1]
    assert SPIKE in live.flags  # the verdict needs the sensor's history
    store = make_store(own)
    try:
        stored = snapshot(store, own.search_index_prefix)
    finally:
        store.close()
    replayed = stored[document_id(SENSOR, "ev-10")]
    assert (replayed["flags"], replayed["qc"]) == (list(live.flags), live.qc)
    assert replayed["kafka"] == {"topic": topic, "partition": 0, "offset": 10}  # its source
    assert replayed["batch_id"] == "replay-1"  # the second replay did not overwrite it
    assert (first.indexed, again.indexed) == (1, 0)
    assert again.duplicates == 1
    # the broken record fails for its real reason now: one new letter, once
    dlq = consume_all(own, own.dead_letter_topic, 10**9, idle_seconds=3)
    reasons = [dict(m.headers() or [])["dlq.reason"] for m in dlq]
    assert reasons == [b"range_failed", b"range_failed", b"malformed_json"]
    real = dict(dlq[2].headers() or [])
    assert (real["dlq.source.topic"], real["dlq.source.offset"]) == (topic.encode(), b"11")
    assert (first.dead_letters_new, again.dead_letters_new) == (1, 0)
