"""librdkafka configuration shared by every producer and consumer of the pipeline."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer

from iot_pipeline.settings import Settings


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Durable, ordered-per-key producer settings."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_brokers,
        "enable.idempotence": True,
        "acks": "all",
        # The Java client's partitioner: a sensor lands on the same partition whichever
        # client (Python, Java tools, Kafka Connect) produced its readings.
        "partitioner": "murmur2_random",
        "compression.type": "zstd",
        "linger.ms": 20,
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Consumer settings: offsets are committed explicitly, after the work is done."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_brokers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    config.update(overrides)
    return config


def open_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer of `group_id` with `consumer_config` (and `overrides`), logging librdkafka's
    errors only (`log_level` 3): its callers report an outage themselves. The one place the
    positions readers (orchestrator and API) and the API's live path open Kafka."""
    return Consumer(consumer_config(settings, group_id, **{"log_level": 3, **overrides}))
