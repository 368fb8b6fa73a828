"""A test module's own pipeline on the shared stack: its topics, index prefix, consumer group
and Redis keys, created for it and removed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from iot_pipeline.settings import Settings
from iot_pipeline.storage import load_templates, make_store


@contextmanager
def own_pipeline(base: Settings, suffix: str, **overrides: Any) -> Iterator[Settings]:
    own = base.model_copy(
        update={
            "kafka_sensor_data_topic": f"{base.kafka_sensor_data_topic}.{suffix}",
            "kafka_dlq_topic": f"{base.dead_letter_topic}.{suffix}",
            "search_index_prefix": f"{base.search_index_prefix}-{suffix}",
            "etl_consumer_group": f"{base.search_index_prefix}.{suffix}",
            **overrides,
        }
    )
    admin = AdminClient({"bootstrap.servers": own.kafka_brokers})
    topics = [
        NewTopic(own.kafka_sensor_data_topic, num_partitions=6, replication_factor=1),
        NewTopic(own.dead_letter_topic, num_partitions=1, replication_factor=1),
    ]
    for future in admin.create_topics(topics).values():
        future.result(30)
    store = make_store(own)
    store.ensure_templates(load_templates(own.search_templates_dir, own.search_index_prefix))
    try:
        yield own
    finally:
        for future in admin.delete_topics([t.topic for t in topics]).values():
            future.result(30)
        store.delete_indices(store.list_indices(f"{own.search_index_prefix}-*"))
        store.close()
        state = redis.Redis.from_url(own.redis_url)
        for key in state.scan_iter(f"{own.search_index_prefix}:*"):
            state.delete(key)
        state.close()
