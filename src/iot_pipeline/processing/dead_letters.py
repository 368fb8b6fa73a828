"""The dead-letter topic: original bytes as the value, why and where in the headers."""

from __future__ import annotations

from datetime import datetime
from functools import cache

import redis
from confluent_kafka import KafkaError, Message, Producer

from iot_pipeline.cleaning import DeadLetter
from iot_pipeline.schema import format_event_time
from iot_pipeline.settings import Settings


class DeadLetterError(RuntimeError):
    """Dead letters could not be written durably (transient: retry the task)."""


def dead_letter_headers(
    letter: DeadLetter, batch_id: str, at: datetime
) -> list[tuple[str, str | bytes | None]]:
    """Reason, stage, detail, source coordinates, batch and time of one dead letter."""
    source = letter.record
    return [
        ("dlq.reason", letter.reason.encode()),
        ("dlq.stage", letter.stage.encode()),
        ("dlq.detail", letter.detail.encode()[:2000]),
        ("dlq.source.topic", source.topic.encode()),
        ("dlq.source.partition", str(source.partition).encode()),
        ("dlq.source.offset", str(source.offset).encode()),
        ("dlq.batch_id", batch_id.encode()),
        ("dlq.time", format_event_time(at).encode()),
    ]


@cache
def _producer(brokers: str) -> Producer:
    # One per process (created after the worker forks): starting an idempotent producer costs
    # a round of metadata and id requests, half a second on every batch otherwise.
    return Producer(
        {
            "bootstrap.servers": brokers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "log_level": 3,
        }
    )


def _sent_key(prefix: str, topic: str, partition: int) -> str:
    return f"{prefix}:dead-lettered:{topic}:{partition}"


def not_yet_sent(state: redis.Redis, prefix: str, letters: list[DeadLetter]) -> list[DeadLetter]:
    """The letters whose source record was never dead-lettered before (replays, retries)."""
    if not letters:
        return []
    pipe = state.pipeline(transaction=False)
    for letter in letters:
        source = letter.record
        pipe.sismember(_sent_key(prefix, source.topic, source.partition), str(source.offset))
    seen = pipe.execute()
    return [letter for letter, was in zip(letters, seen, strict=True) if not was]


def remember_sent(state: redis.Redis, prefix: str, letters: list[DeadLetter]) -> None:
    """Record the source offsets whose letters Kafka acknowledged."""
    pipe = state.pipeline(transaction=False)
    for letter in letters:
        source = letter.record
        pipe.sadd(_sent_key(prefix, source.topic, source.partition), str(source.offset))
    pipe.execute()


def send_dead_letters(
    settings: Settings, letters: list[DeadLetter], batch_id: str, at: datetime
) -> None:
    """Produce and flush; raises unless every dead letter was acknowledged."""
    if not letters:
        return
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    producer = _producer(settings.kafka_brokers)
    for letter in letters:
        source = letter.record
        producer.produce(
            settings.dead_letter_topic,
            value=source.value,
            key=f"{source.topic}:{source.partition}:{source.offset}".encode(),
            headers=dead_letter_headers(letter, batch_id, at),
            on_delivery=on_delivery,
        )
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining or failures:
        raise DeadLetterError(
            f"{remaining} dead letters unconfirmed, {len(failures)} failed: "
            f"{failures[0] if failures else 'timeout'}"
        )
