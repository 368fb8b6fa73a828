"""Read exactly one offset range of one partition from Kafka."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, TopicPartition

from iot_pipeline.cleaning import RawRecord
from iot_pipeline.kafka_config import consumer_config
from iot_pipeline.processing.ranges import OffsetRange
from iot_pipeline.settings import Settings


class KafkaReadError(RuntimeError):
    """The range could not be read completely (transient: retry the task)."""


def read_range(settings: Settings, offsets: OffsetRange, timeout: float = 60.0) -> list[RawRecord]:
    """The records of [start, end): assign and seek, never subscribe or commit."""
    if offsets.size == 0:
        return []
    # A throwaway group id: the batch's offsets are committed by the orchestrator, not here.
    consumer = Consumer(
        consumer_config(
            settings,
            f"iot-reader-{uuid.uuid4().hex[:12]}",
            **{"enable.partition.eof": False, "log_level": 3, "fetch.max.bytes": 52428800},
        )
    )
    records: list[RawRecord] = []
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(offsets.topic, offsets.partition, offsets.start)])
        next_offset = offsets.start
        while next_offset < offsets.end:
            if time.monotonic() > deadline:
                raise KafkaReadError(
                    f"read {len(records)} of {offsets.size} records of {offsets} in {timeout:.0f}s"
                )
            batch = consumer.consume(min(10_000, offsets.end - next_offset), timeout=1.0)
            if not batch:
                # offsets can have holes (transaction markers): trust the consumer's position
                (position,) = consumer.position([TopicPartition(offsets.topic, offsets.partition)])
                if position.offset >= offsets.end:
                    break
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError.OFFSET_OUT_OF_RANGE:
                        raise KafkaReadError(f"{offsets} is no longer in Kafka: {error.str()}")
                    continue
                offset = message.offset()
                if offset is None or offset < next_offset or offset >= offsets.end:
                    continue
                records.append(
                    RawRecord(message.value() or b"", offsets.topic, offsets.partition, offset)
                )
                next_offset = offset + 1
    finally:
        consumer.close()
    return records
