"""Read exactly one offset range of one partition from Kafka."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import suppress

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from iot_pipeline.cleaning import RawRecord
from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.errors import KafkaReadError
from iot_pipeline.kafka_config import consumer_config
from iot_pipeline.settings import Settings

# Headers a dead letter keeps of its source record, restored when the dead-letter topic is
# replayed so that the record is judged as it was the first time.
SOURCE_KEY_HEADER = "dlq.source.key"
SOURCE_TIME_HEADER = "dlq.source.timestamp"


def _timestamp(message: Message) -> float | None:
    kind, millis = message.timestamp()
    return millis / 1000.0 if kind != TIMESTAMP_NOT_AVAILABLE and millis > 0 else None


def _record(message: Message, offsets: OffsetRange, offset: int, from_dlq: bool) -> RawRecord:
    key, stamp = message.key(), _timestamp(message)
    source: tuple[str, int, int] | None = None
    reason: str | None = None
    if from_dlq:
        headers = dict(message.headers() or [])
        source_key = headers.get(SOURCE_KEY_HEADER)
        key = source_key if isinstance(source_key, bytes) else None
        source_time = headers.get(SOURCE_TIME_HEADER)
        with suppress(ValueError):
            stamp = float(source_time) if source_time else stamp
        source = _source(headers)
        raw_reason = headers.get("dlq.reason")
        reason = raw_reason.decode(errors="replace") if isinstance(raw_reason, bytes) else None
    return RawRecord(
        message.value() or b"",
        offsets.topic,
        offsets.partition,
        offset,
        key,
        stamp,
        source=source,
        letter_reason=reason,
    )


def _source(headers: dict[str, str | bytes | None]) -> tuple[str, int, int] | None:
    """A dead letter's source coordinates (None when its headers do not say)."""
    topic, partition, offset = (
        headers.get(f"dlq.source.{name}") for name in ("topic", "partition", "offset")
    )
    if not (
        isinstance(topic, bytes) and isinstance(partition, bytes) and isinstance(offset, bytes)
    ):
        return None
    try:
        return topic.decode(), int(partition), int(offset)
    except (UnicodeDecodeError, ValueError):
        return None


def read_range(
    settings: Settings,
    offsets: OffsetRange,
    timeout: float = 60.0,
    max_bytes: int | None = None,
) -> list[RawRecord]:
    """The records of [start, end): assign and seek, never subscribe or commit.

    With `max_bytes`, reading stops after the record that reaches it (at least one record is
    always read): the caller processes that prefix and leaves the rest to the next range.
    """
    if offsets.size == 0:
        return []
    from_dlq = offsets.topic == settings.dead_letter_topic
    held = 0
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
                record = _record(message, offsets, offset, from_dlq)
                records.append(record)
                next_offset = offset + 1
                held += len(record.value)
                if max_bytes is not None and held >= max_bytes:
                    return records
    finally:
        consumer.close()
    return records


def read_pieces(settings: Settings, offsets: OffsetRange) -> Iterator[list[RawRecord]]:
    """The whole range, in pieces of at most `ETL_MAX_BYTES_PER_RANGE` (for work that must
    see every record of a range without holding it all at once)."""
    position = offsets.start
    while position < offsets.end:
        rest = offsets.model_copy(update={"start": position})
        piece = read_range(settings, rest, max_bytes=settings.etl_max_bytes_per_range)
        if not piece:
            return
        yield piece
        position = piece[-1].offset + 1


def log_start(settings: Settings, offsets: OffsetRange) -> int:
    """The first offset Kafka still holds in the range's partition."""
    consumer = Consumer(consumer_config(settings, f"iot-reader-{uuid.uuid4().hex[:12]}"))
    try:
        low, _ = consumer.get_watermark_offsets(
            TopicPartition(offsets.topic, offsets.partition), timeout=15
        )
    except KafkaException as exc:
        raise KafkaReadError(f"no watermarks for {offsets}: {exc}") from exc
    finally:
        consumer.close()
    return int(low)
