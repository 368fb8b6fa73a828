"""The dead-letter topic: original bytes as the value, why and where in the headers; and a
range's dead-letter stage (`deliver`): each source record's letter written once."""

from __future__ import annotations

import dataclasses
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

import redis
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from iot_pipeline.cleaning import CleanReading, DeadLetter, RawRecord
from iot_pipeline.errors import DeadLetterError
from iot_pipeline.processing.reader import SOURCE_KEY_HEADER, SOURCE_TIME_HEADER
from iot_pipeline.schema import format_event_time
from iot_pipeline.settings import Settings
from iot_pipeline.storage import ItemFailure
from iot_pipeline.topics import load_topic_specs


def dead_letter_headers(
    letter: DeadLetter, batch_id: str, at: datetime
) -> list[tuple[str, str | bytes | None]]:
    """Reason, stage, detail, source coordinates, batch and time of one dead letter."""
    source = letter.record
    headers: list[tuple[str, str | bytes | None]] = [
        ("dlq.reason", letter.reason.encode()),
        ("dlq.stage", letter.stage.encode()),
        ("dlq.detail", letter.detail.encode()[:2000]),
        ("dlq.source.topic", source.topic.encode()),
        ("dlq.source.partition", str(source.partition).encode()),
        ("dlq.source.offset", str(source.offset).encode()),
        ("dlq.batch_id", batch_id.encode()),
        ("dlq.time", format_event_time(at).encode()),
    ]
    if letter.error_type:
        headers.append(("dlq.exception", letter.error_type.encode()[:200]))
    if source.key is not None:
        headers.append((SOURCE_KEY_HEADER, source.key[:1024]))
    if source.timestamp is not None:
        headers.append((SOURCE_TIME_HEADER, repr(source.timestamp).encode()))
    return headers


# Room left in a record for its headers and the batch framing around it.
FRAMING_BYTES = 4096
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # the broker's default `max.message.bytes`


@cache
def topic_max_bytes(brokers: str, topic: str) -> int:
    """The dead-letter topic's `max.message.bytes` (the broker's default when it cannot say)."""
    admin = AdminClient({"bootstrap.servers": brokers, "log_level": 3})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        configs = admin.describe_configs([resource])[resource].result(timeout=10)
        return int(configs["max.message.bytes"].value)
    except Exception:  # any doubt: the broker's default, which is safe
        return DEFAULT_MAX_MESSAGE_BYTES


def fit_value(value: bytes, limit: int) -> tuple[bytes, int | None]:
    """The value to send within `limit` bytes, and the original size when it had to be cut.

    Values are sent gzip-compressed, so one that compresses below the limit goes whole; only
    what cannot fit even compressed is truncated (the header says so and keeps its size)."""
    budget = limit - FRAMING_BYTES
    if len(value) <= budget or len(zlib.compress(value, 1)) <= budget * 0.9:
        return value, None
    return value[:budget], len(value)


@cache
def _producer(brokers: str, max_bytes: int) -> Producer:
    # One per process (created after the worker forks): starting an idempotent producer costs
    # a round of metadata and id requests, half a second on every batch otherwise.
    return Producer(
        {
            "bootstrap.servers": brokers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "gzip",
            # the request may hold one record as large as the topic accepts
            "message.max.bytes": max_bytes + 2 * FRAMING_BYTES,
            "log_level": 3,
        }
    )


def dead_letter_producer(settings: Settings) -> Producer:
    """The process's dead-letter producer, sized for the dead-letter topic's largest record."""
    limit = topic_max_bytes(settings.kafka_brokers, settings.dead_letter_topic)
    return _producer(settings.kafka_brokers, limit)


NOTE_DAYS_WITHOUT_RETENTION = 30  # a dead-letter topic without `retention.ms`: keep notes this long


def _notes_key(prefix: str, topic: str, partition: int) -> str:
    # offset -> when its letter was acknowledged (epoch seconds)
    return f"{prefix}:dead-letter-notes:{topic}:{partition}"


def _legacy_key(prefix: str, topic: str, partition: int) -> str:
    return f"{prefix}:dead-lettered:{topic}:{partition}"  # a plain set, before notes expired


@cache
def notes_lifetime(topics_file: Path) -> float:
    """Seconds a note is kept: the dead-letter topic's `retention.ms` (kafka/topics.json), as a
    letter older than that is gone from the topic too."""
    for spec in load_topic_specs(topics_file):
        if spec.role == "dead_letter" and "retention.ms" in spec.config:
            return max(1.0, int(spec.config["retention.ms"]) / 1000)
    return NOTE_DAYS_WITHOUT_RETENTION * 86400.0


def _adopt_legacy(state: redis.Redis, prefix: str, letters: list[DeadLetter]) -> None:
    """Move the notes of an older version (a set that never shrank) into the expiring ones;
    one round trip when there are none left."""
    sources = sorted({(d.record.topic, d.record.partition) for d in letters})
    pipe = state.pipeline(transaction=False)
    for topic, partition in sources:
        pipe.smembers(_legacy_key(prefix, topic, partition))
    found = pipe.execute()
    now = time.time()
    for (topic, partition), offsets in zip(sources, found, strict=True):
        if offsets:
            notes = {str(o, "ascii") if isinstance(o, bytes) else str(o): now for o in offsets}
            state.zadd(_notes_key(prefix, topic, partition), notes, nx=True)
            state.delete(_legacy_key(prefix, topic, partition))


def _note(letter: DeadLetter, by_reason: bool) -> str:
    """A letter's note: its source offset, with its reason for a letter sent again because
    a replay found another reason (each reason once)."""
    offset = str(letter.record.offset)
    return f"{offset}#{letter.reason}" if by_reason else offset


def not_yet_sent(
    state: redis.Redis, prefix: str, letters: list[DeadLetter], by_reason: bool = False
) -> list[DeadLetter]:
    """The letters whose source record was never dead-lettered before (replays, retries)."""
    if not letters:
        return []
    _adopt_legacy(state, prefix, letters)
    pipe = state.pipeline(transaction=False)
    for letter in letters:
        source = letter.record
        pipe.zscore(_notes_key(prefix, source.topic, source.partition), _note(letter, by_reason))
    seen = pipe.execute()
    return [letter for letter, at in zip(letters, seen, strict=True) if at is None]


def remember_sent(
    state: redis.Redis,
    prefix: str,
    letters: list[DeadLetter],
    lifetime: float,
    by_reason: bool = False,
) -> None:
    """Note the source offsets whose letters Kafka acknowledged, and forget the notes older
    than `lifetime` seconds (so the notes stay bounded by what the topic still holds)."""
    if not letters:
        return
    now = time.time()
    by_key: dict[str, dict[str, float]] = {}
    for letter in letters:
        source = letter.record
        by_key.setdefault(_notes_key(prefix, source.topic, source.partition), {})[
            _note(letter, by_reason)
        ] = now
    pipe = state.pipeline(transaction=False)
    for key, offsets in by_key.items():
        pipe.zadd(key, offsets)
        pipe.zremrangebyscore(key, "-inf", now - lifetime)
    pipe.execute()


def send_dead_letters(
    settings: Settings, letters: list[DeadLetter], batch_id: str, at: datetime
) -> None:
    """Produce and flush; raises unless every dead letter was acknowledged.

    A value larger than the topic takes is truncated (header `dlq.truncated`: the original
    size) rather than failing the range; a letter the broker still finds too large is sent
    again cut to a quarter of the limit.
    """
    if not letters:
        return
    limit = topic_max_bytes(settings.kafka_brokers, settings.dead_letter_topic)
    producer = _producer(settings.kafka_brokers, limit)
    failures: list[str] = []
    too_large: list[DeadLetter] = []

    def produce(letter: DeadLetter, value_limit: int) -> None:
        source = letter.record
        value, original = fit_value(source.value, value_limit)
        headers = dead_letter_headers(letter, batch_id, at)
        if original is not None:
            headers.append(("dlq.truncated", str(original).encode()))

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                return
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE and value_limit == limit:
                too_large.append(letter)
            else:
                failures.append(str(err))

        key = f"{source.topic}:{source.partition}:{source.offset}".encode()
        while True:
            try:
                producer.produce(
                    settings.dead_letter_topic,
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.5)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE or value_limit != limit:
                    raise DeadLetterError(f"dead letter refused by the producer: {exc}") from exc
                on_delivery(exc.args[0], None)  # type: ignore[arg-type]
                break
        producer.poll(0)

    for letter in letters:
        produce(letter, limit)
    remaining = producer.flush(30)
    for letter in too_large:
        produce(letter, limit // 4 + FRAMING_BYTES)
    if too_large:
        remaining = producer.flush(30)
    if remaining or failures:
        raise DeadLetterError(
            f"{remaining} dead letters unconfirmed, {len(failures)} failed: "
            f"{failures[0] if failures else 'timeout'}"
        )


INDEX_REJECTED = "index_rejected"  # the search engine refused the document (strict mapping)


def index_rejections(
    rejected: list[ItemFailure], readings: dict[str, CleanReading]
) -> list[DeadLetter]:
    """A letter for each reading the search engine refused (`readings`: by document id)."""
    return [
        DeadLetter(
            readings[failure.action.id].source,
            INDEX_REJECTED,
            "index",
            f"{failure.error_type}: {failure.reason}",
        )
        for failure in rejected
    ]


@dataclass(frozen=True)
class Delivery:
    """What a range's dead-letter stage did."""

    letters: int  # records of the range that are dead letters
    new: int  # of which written now (the others were, by an earlier run)
    still_dead: int  # records replayed from the dead-letter topic that fail again


def deliver(
    settings: Settings,
    state: redis.Redis,
    letters: list[DeadLetter],
    batch_id: str,
    ingest_time: datetime,
) -> Delivery:
    """Write a range's dead letters, each source record's once.

    Replaying the dead-letter topic itself: what still fails for the same reason is already
    there, once; what fails for another reason now gets a letter with its real reason (at
    its source's coordinates, once per reason). A record dead-lettered by an earlier run of
    the same offsets (a replay, a retried batch) is not written again, unless a crash falls
    between Kafka's acknowledgement and the note in Redis (then at least once)."""
    sent = [d for d in letters if d.record.topic != settings.dead_letter_topic]
    again = [d for d in letters if d.record.topic == settings.dead_letter_topic]
    reasoned = [moved for d in again if (moved := _at_source(d)) is not None]
    prefix = settings.search_index_prefix
    lifetime = notes_lifetime(settings.kafka_topics_file)
    fresh = not_yet_sent(state, prefix, sent)
    new_reasons = not_yet_sent(state, prefix, reasoned, by_reason=True)
    send_dead_letters(settings, fresh + new_reasons, batch_id, ingest_time)
    remember_sent(state, prefix, fresh, lifetime)
    remember_sent(state, prefix, new_reasons, lifetime, by_reason=True)
    return Delivery(
        letters=len(sent) + len(reasoned),
        new=len(fresh) + len(new_reasons),
        still_dead=len(again) - len(reasoned),
    )


def _at_source(letter: DeadLetter) -> DeadLetter | None:
    """A replayed letter that failed for another reason than its original one, as a letter
    of its source record (so its headers name the source); None when the reason is the
    same (or its headers do not say)."""
    record = letter.record
    known = record.letter_reason
    if record.source is None or known is None or letter.reason == known:
        return None
    topic, partition, offset = record.source
    source = RawRecord(record.value, topic, partition, offset, record.key, record.timestamp)
    return dataclasses.replace(letter, record=source)
