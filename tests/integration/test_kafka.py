"""Kafka for real: keyed messages produced with confluent-kafka land on the partition the
Java client's murmur2 partitioner picks, and consume back complete and in order per key."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from iot_pipeline.kafka_config import consumer_config, producer_config
from iot_pipeline.settings import Settings
from iot_pipeline.topics import ensure_topics

from support.kafka_io import consume_all, coordinates, key_of, value_of
from support.partitioning import kafka_murmur2, kafka_murmur2_partition

PARTITIONS = 6


@pytest.mark.parametrize(
    ("key", "expected"),
    [  # Kafka's own test vectors for Utils.murmur2
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_reference_murmur2_matches_kafka_vectors(key: bytes, expected: int) -> None:
    assert kafka_murmur2(key) == expected


@pytest.fixture
def topic(test_settings: Settings, run_id: str, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"test.{run_id}.{request.node.name[:40]}"
    admin = AdminClient({"bootstrap.servers": test_settings.kafka_brokers})
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[
        name
    ].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def test_keyed_messages_land_on_the_java_partition_and_keep_order(
    test_settings: Settings, topic: str, run_id: str
) -> None:
    sensors = [
        f"casa-{district}-{i:03d}" for district in ("anfa", "maarif", "sidi") for i in range(8)
    ]
    per_sensor = 20
    delivered: dict[str, set[int]] = defaultdict(set)
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failures.append(str(err))
        else:
            delivered[key_of(msg).decode()].add(coordinates(msg)[0])

    producer = Producer(producer_config(test_settings))
    for seq in range(per_sensor):
        for sensor in sensors:
            producer.produce(topic, key=sensor, value=f"{sensor}:{seq}", on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []

    for sensor, partitions in delivered.items():
        assert partitions == {kafka_murmur2_partition(sensor.encode(), PARTITIONS)}, sensor
    assert len({p for parts in delivered.values() for p in parts}) > 1, "keys spread out"

    received = consume_all(
        test_settings, topic, len(sensors) * per_sensor, group=f"test.{run_id}.order"
    )
    assert len(received) == len(sensors) * per_sensor
    sequences: dict[str, list[int]] = defaultdict(list)
    for message in received:
        sensor, number = value_of(message).decode().split(":")
        assert key_of(message).decode() == sensor
        sequences[sensor].append(int(number))
    assert all(seqs == list(range(per_sensor)) for seqs in sequences.values())


def test_committed_offsets_resume_where_the_group_left_off(
    test_settings: Settings, topic: str, run_id: str
) -> None:
    producer = Producer(producer_config(test_settings))
    for i in range(10):
        producer.produce(topic, key="sensor-a", value=str(i))
    assert producer.flush(30) == 0
    group = f"test.{run_id}.resume"

    first = consume_all(test_settings, topic, 10, group=group)
    consumer = Consumer(consumer_config(test_settings, group))
    consumer.commit(offsets=[_next_offset(first[5])], asynchronous=False)
    consumer.close()

    rest = consume_all(test_settings, topic, 4, idle_seconds=5, group=group)
    assert [int(value_of(m)) for m in rest] == [6, 7, 8, 9]


def _next_offset(message: Message) -> TopicPartition:
    topic = message.topic()
    assert topic is not None
    partition, offset = coordinates(message)
    return TopicPartition(topic, partition, offset + 1)


def test_pipeline_topics_are_created_idempotently(test_settings: Settings) -> None:
    first = ensure_topics(test_settings)
    assert set(first.values()) == {"created"}
    assert set(ensure_topics(test_settings).values()) == {"exists"}
    admin = AdminClient({"bootstrap.servers": test_settings.kafka_brokers})
    metadata = admin.list_topics(timeout=10).topics
    assert len(metadata[test_settings.kafka_sensor_data_topic].partitions) == PARTITIONS
    assert test_settings.dead_letter_topic in metadata
    admin.delete_topics(list(first))
