"""Where a consumer group stands on each partition of a topic (committed offset, watermarks,
records lost to retention, a reset topic): read by the orchestrator to plan and by the API to
report the lag, through one consumer helper.

The group never subscribes: its consumer only reads and commits offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from iot_pipeline.errors import OffsetsError
from iot_pipeline.kafka_config import open_consumer
from iot_pipeline.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT = 15.0


@contextmanager
def group_client(settings: Settings, group: str) -> Iterator[Consumer]:
    consumer = open_consumer(settings, group)
    try:
        yield consumer
    except KafkaException as exc:
        raise OffsetsError(f"Kafka refused an offsets request of group {group}: {exc}") from exc
    finally:
        consumer.close()


def topic_partitions(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=TIMEOUT).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        reason = metadata.error if metadata is not None else "unknown topic"
        raise OffsetsError(f"topic {topic} is not available: {reason}")
    return sorted(metadata.partitions)


@dataclass(frozen=True)
class PartitionPosition:
    """Where the group stands on one partition."""

    partition: int
    committed: int  # next offset to process (the log start when nothing was committed)
    low: int
    high: int
    # records Kafka deleted (retention) before the group processed them: the group's offset
    # was below the log start by this much
    lost: int = 0
    lost_from: int = 0  # the group's offset then
    reset: bool = False  # the group's offset was past the log's end: a topic reset

    @property
    def lag(self) -> int:
        return max(0, self.high - self.committed)


def positions(settings: Settings, topic: str, group: str) -> list[PartitionPosition]:
    """Committed offset and watermarks of every partition of the topic."""
    with group_client(settings, group) as consumer:
        return group_positions(consumer, topic)


def group_positions(consumer: Consumer, topic: str) -> list[PartitionPosition]:
    """`positions` through a consumer of the group that the caller keeps (KafkaException
    passes through: the caller decides what an outage means)."""
    parts = topic_partitions(consumer, topic)
    committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=TIMEOUT)
    result = []
    for tp in committed:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, tp.partition), timeout=TIMEOUT
        )
        start = tp.offset if tp.offset >= 0 else low
        if start < low:
            # Kafka's retention deleted records this group never processed: counted as lost
            # by the orchestrator (run_state.note_lost), never skipped in silence
            log.error(
                "%s[%d]: committed offset %d is below the log start %d: %d records were "
                "deleted by Kafka retention before processing",
                topic,
                tp.partition,
                start,
                low,
                low - start,
            )
            result.append(PartitionPosition(tp.partition, low, low, high, low - start, start))
            continue
        if start > high:
            # the log ends before the group's offset: the topic was deleted and created
            # again (or truncated); its records start over at the log start
            log.error(
                "%s[%d]: committed offset %d is past the log end %d: the topic was reset",
                topic,
                tp.partition,
                start,
                high,
            )
            result.append(PartitionPosition(tp.partition, low, low, high, reset=True))
            continue
        result.append(PartitionPosition(tp.partition, start, low, high))
    return result
