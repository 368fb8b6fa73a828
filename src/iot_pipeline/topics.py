"""Kafka topic definitions (from `kafka/topics.json`) and their idempotent creation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from iot_pipeline.settings import Settings, get_settings

TopicRole = Literal["sensor_data", "dead_letter"]


class TopicSpec(BaseModel):
    """One topic: its role in the pipeline, partitions and topic-level configs."""

    role: TopicRole
    partitions: int = Field(ge=1, le=1000)
    replication_factor: int = Field(1, ge=1)
    config: dict[str, str] = Field(default_factory=dict)


class TopicsFile(BaseModel):
    """The shape of `kafka/topics.json`."""

    topics: list[TopicSpec]


def load_topic_specs(path: Path) -> list[TopicSpec]:
    """Read and validate the topic definitions file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"topic definitions not found at {path}; run from the project root "
            "or set KAFKA_TOPICS_FILE"
        ) from None
    return TopicsFile.model_validate(raw).topics


def topic_names(settings: Settings) -> dict[TopicRole, str]:
    """The configured name of each topic role."""
    return {
        "sensor_data": settings.kafka_sensor_data_topic,
        "dead_letter": settings.dead_letter_topic,
    }


def ensure_topics(settings: Settings, timeout: float = 30.0) -> dict[str, str]:
    """Create the pipeline's topics that do not exist yet; returns name -> 'created'/'exists'."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    specs = load_topic_specs(settings.kafka_topics_file)
    names = topic_names(settings)
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers, "log_level": 3})
    existing = set(admin.list_topics(timeout=timeout).topics)
    outcome: dict[str, str] = {}
    wanted: list[NewTopic] = []
    for spec in specs:
        name = names[spec.role]
        if name in existing:
            outcome[name] = "exists"
            continue
        wanted.append(
            NewTopic(
                name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config=spec.config,
            )
        )
    if wanted:
        for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
            try:
                future.result()
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: created concurrently
                    raise
                outcome[name] = "exists"
    return outcome


def main() -> int:
    """Create the configured topics and print what was done."""
    settings = get_settings()
    for name, state in ensure_topics(settings).items():
        print(f"topic {name}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
