"""Provisional readings: one Kafka consumer per API process (a thread, no group membership,
no commits) reads the sensor topic from its end; each record goes through the cleaner with an
empty state (the rules that need no history) and reaches the hub within about a second."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from iot_pipeline.cleaning import CleaningPolicy, RawRecord, clean_batch
from iot_pipeline.contracts.readings import reading_document
from iot_pipeline.kafka_config import open_consumer
from iot_pipeline.schema import format_event_time

if TYPE_CHECKING:
    from iot_pipeline.api.live.hub import LiveHub

PROVISIONAL_BATCH = "live"  # the batch_id of a provisional reading


def consume(hub: LiveHub) -> None:
    """The Kafka thread: read, clean and hand over until the hub stops; an outage closes the
    consumer, and a new one starts from the end again after 2 s."""
    settings = hub.settings
    topic = settings.kafka_sensor_data_topic
    policy = CleaningPolicy(max_ahead=timedelta(hours=settings.event_time_max_ahead_hours))
    consumer: Consumer | None = None
    while not hub.stopping.is_set():
        try:
            if consumer is None:
                consumer = _open_at_ends(hub, topic)
                hub.stats.upstreams += 1  # counted once assigned: uncounted when closed
            messages = consumer.consume(num_messages=2000, timeout=0.2)
        except (KafkaException, KeyError) as exc:
            hub.note(f"Kafka: {exc}; retrying")
            if consumer is not None:
                with contextlib.suppress(Exception):
                    consumer.close()
                consumer = None
                hub.stats.upstreams -= 1
            hub.stopping.wait(2.0)
            continue
        records = _records(messages, topic)
        if records:
            try:
                forward(hub, records, policy)
            except Exception as exc:  # a batch the cleaner let through but we cannot send
                hub.note(f"provisional batch dropped: {type(exc).__name__}: {exc}")
    if consumer is not None:
        consumer.close()
        hub.stats.upstreams -= 1


def _open_at_ends(hub: LiveHub, topic: str) -> Consumer:
    """A consumer of its own group, assigned to the end of every partition; closed again
    when the assignment fails (the topic missing, Kafka down)."""
    settings = hub.settings
    group = f"{settings.etl_consumer_group}.live.{hub.epoch}"
    consumer = open_consumer(settings, group, **{"auto.offset.reset": "latest"})
    try:
        _assign_ends(consumer, topic)
    except BaseException:
        with contextlib.suppress(Exception):
            consumer.close()
        raise
    return consumer


def _assign_ends(consumer: Consumer, topic: str) -> None:
    """Read each partition from its end as of now, resolved before the first fetch: once
    `upstreams` counts the consumer, nothing produced later is missed."""
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    if not partitions:
        raise KafkaException(f"topic {topic} has no partitions (yet)")
    consumer.assign(
        [TopicPartition(topic, p, _end(consumer, TopicPartition(topic, p))) for p in partitions]
    )


def _records(messages: list[Any], topic: str) -> list[RawRecord]:
    return [
        RawRecord(m.value() or b"", topic, m.partition() or 0, m.offset() or 0, m.key(), _stamp(m))
        for m in messages
        if m.error() is None
    ]


def forward(hub: LiveHub, records: list[RawRecord], policy: CleaningPolicy) -> None:
    """Clean the records with no history and hand the readings to the hub's event loop; while
    the hub is idle, only count them (nobody listens: no cleaning)."""
    if hub.idle():
        if hub.loop is not None:
            hub.loop.call_soon_threadsafe(hub.skip, len(records))
        return
    now = datetime.now(UTC)
    cleaned = clean_batch(records, {}, now, policy)  # no history: stateless rules only
    ingest = format_event_time(now)
    docs = [reading_document(c, PROVISIONAL_BATCH, ingest) for c in cleaned.readings]
    stamps = [r.timestamp for r in records if r.timestamp]
    if stamps:
        hub.stats.last_provisional_lag = round(time.time() - max(stamps), 3)
    if docs and hub.loop is not None:
        hub.loop.call_soon_threadsafe(hub.publish, docs, True)


def _end(consumer: Consumer, partition: TopicPartition) -> int:
    """The partition's high watermark now."""
    _, high = consumer.get_watermark_offsets(partition, timeout=10)
    return int(high)


def _stamp(message: Any) -> float | None:
    kind, millis = message.timestamp()
    return millis / 1000.0 if kind and millis > 0 else None
