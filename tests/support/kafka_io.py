"""Readings into a test's topic, and a whole topic back, for tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, KafkaError, Message, Producer

from iot_pipeline.kafka_config import consumer_config, producer_config
from iot_pipeline.settings import Settings


def produce_readings(settings: Settings, readings: Iterable[Mapping[str, object]]) -> None:
    """Send readings as JSON to the sensor topic, keyed by sensor like the simulator; returns
    once Kafka acknowledged every one."""
    producer = Producer(producer_config(settings))
    for reading in readings:
        producer.produce(
            settings.kafka_sensor_data_topic,
            key=str(reading["sensor_id"]).encode(),
            value=json.dumps(reading).encode(),
        )
        producer.poll(0)
    assert producer.flush(30) == 0


def consume_all(
    settings: Settings,
    topic: str,
    expected: int,
    idle_seconds: float = 10.0,
    group: str | None = None,
) -> list[Message]:
    """Every message of `topic` from the group's position (a fresh group by default).

    Stops at `expected` messages, or after `idle_seconds` without any.
    """
    consumer = Consumer(consumer_config(settings, group or f"test.reader.{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    received: list[Message] = []
    idle = 0.0
    try:
        while len(received) < expected and idle < idle_seconds:
            batch = consumer.consume(10_000, timeout=0.5)
            if not batch:
                idle += 0.5
                continue
            idle = 0.0
            for message in batch:
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    continue
                received.append(message)
    finally:
        consumer.close()
    return received


# A consumed message has a topic, a partition and an offset, and its headers as (name, bytes)
# pairs; the client's types allow None (and a produced message's shapes) everywhere.


def coordinates(message: Message) -> tuple[int, int]:
    """(partition, offset) of a consumed message."""
    partition, offset = message.partition(), message.offset()
    assert partition is not None, message
    assert offset is not None, message
    return partition, offset


def value_of(message: Message) -> bytes:
    """The value of a consumed message, which must have one (no tombstones in our topics)."""
    value = message.value()
    assert value is not None, coordinates(message)
    return value


def key_of(message: Message) -> bytes:
    """The key of a consumed message, which must have one."""
    key = message.key()
    assert key is not None, coordinates(message)
    return key


def headers_of(message: Message) -> dict[str, bytes]:
    """The headers of a consumed message by name (the last one of a name; no value is b"")."""
    pairs = message.headers() or []
    assert isinstance(pairs, list), pairs
    found: dict[str, bytes] = {}
    for name, value in pairs:
        assert not isinstance(value, str), (name, value)
        found[name] = value or b""
    return found


def as_produced(messages: Iterable[Message]) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of each message, as `ground_truth.expected_ids` reads them
    (no value is b"", which is no reading)."""
    return [(*coordinates(m), m.value() or b"") for m in messages]
