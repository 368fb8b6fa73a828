"""Offsets of the ETL's consumer group: plan a batch, commit it, measure the lag.

The group never subscribes: the orchestrator reads its committed offsets, fixes the ranges,
and commits the ends only after every range of the batch is durably processed.
"""

from __future__ import annotations

import logging
from datetime import datetime

from confluent_kafka import Consumer, TopicPartition

from iot_pipeline.contracts.positions import (
    TIMEOUT,
    PartitionPosition,
    group_client,
    positions,
    topic_partitions,
)
from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.errors import OffsetsError
from iot_pipeline.settings import Settings

log = logging.getLogger(__name__)


def plan_ranges(
    settings: Settings, topic: str, group: str, cap: int, per_range: int | None = None
) -> list[OffsetRange]:
    """Ranges from each partition's committed offset to its high watermark (at most `cap`
    records per partition), in consecutive ranges of at most `per_range` records."""
    return ranges_from(topic, positions(settings, topic, group), cap, per_range)


def ranges_from(
    topic: str, found: list[PartitionPosition], cap: int, per_range: int | None = None
) -> list[OffsetRange]:
    """`plan_ranges` from positions read already."""
    return split_ranges(
        [
            OffsetRange(
                topic=topic,
                partition=p.partition,
                start=p.committed,
                end=min(p.high, p.committed + cap),
            )
            for p in found
            if p.high > p.committed
        ],
        per_range or cap,
    )


def split_ranges(ranges: list[OffsetRange], size: int) -> list[OffsetRange]:
    """Each range as consecutive ranges of at most `size` records."""
    return [
        r.model_copy(update={"start": start, "end": min(start + size, r.end)})
        for r in ranges
        for start in range(r.start, r.end, size)
    ]


def commit_ranges(settings: Settings, group: str, ranges: list[OffsetRange]) -> list[OffsetRange]:
    """Commit each range's end offset for the group (synchronously), never backwards: a range
    ending before the group's offset (a stale run finishing late) is left out, loudly.
    Returns the ranges committed."""
    if not ranges:
        return []
    with group_client(settings, group) as consumer:
        now = consumer.committed(
            [TopicPartition(r.topic, r.partition) for r in ranges], timeout=TIMEOUT
        )
        held = {(tp.topic, tp.partition): tp.offset for tp in now}
        forward = []
        for r in ranges:
            current = held.get((r.topic, r.partition), -1)
            if current > r.end:
                log.error(
                    "%s: not committed, the group is at %d already (a commit never moves an "
                    "offset backwards)",
                    r,
                    current,
                )
                continue
            forward.append(r)
        _commit(consumer, [TopicPartition(r.topic, r.partition, r.end) for r in forward])
    return forward


def _commit(consumer: Consumer, offsets: list[TopicPartition]) -> None:
    if not offsets:
        return
    done = consumer.commit(offsets=offsets, asynchronous=False)
    failed = [tp for tp in done or [] if tp.error is not None]
    if failed:
        raise OffsetsError(f"commit refused for {failed}")


def rewind_to_log_start(
    settings: Settings, group: str, topic: str, only: list[int] | None = None
) -> dict[int, int]:
    """Move the group to the log start of each partition (or of `only` these): the one
    rewind there is, for a topic that was deleted and created again (its offsets start
    over). Returns partition -> start."""
    with group_client(settings, group) as consumer:
        starts = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)[0]
            for p in topic_partitions(consumer, topic)
            if only is None or p in only
        }
        _commit(consumer, [TopicPartition(topic, p, low) for p, low in starts.items()])
    return starts


def ranges_for_times(
    settings: Settings, topic: str, start: datetime, end: datetime
) -> list[OffsetRange]:
    """The offsets of records whose Kafka timestamps fall in [start, end), per partition."""
    if end <= start:
        raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    with group_client(settings, "iot-etl-replay-lookup") as consumer:
        parts = topic_partitions(consumer, topic)
        found: dict[int, list[int]] = {p: [] for p in parts}
        for moment in (start, end):
            millis = int(moment.timestamp() * 1000)
            answer = consumer.offsets_for_times(
                [TopicPartition(topic, p, millis) for p in parts], timeout=TIMEOUT
            )
            for tp in answer:
                if tp.offset < 0:  # nothing at or after that time: up to the end
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, tp.partition), timeout=TIMEOUT
                    )
                    found[tp.partition].append(high)
                else:
                    found[tp.partition].append(tp.offset)
    return [
        OffsetRange(topic=topic, partition=p, start=a, end=b)
        for p, (a, b) in sorted(found.items())
        if b > a
    ]
