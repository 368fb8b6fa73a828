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
