"""Kafka identity: a topic is its topic id, not its name.

Everything the pipeline remembers of a topic is keyed by its name, partition and offset: the
cleaner's checkpoints, the dead-letter notes (which offsets were dead-lettered already), the
range failures, the commit clocks. A topic deleted and created again under the same name
starts its offsets at 0 again, so those memories would describe records that no longer
exist: a new bad record at an offset noted before would never be dead-lettered, a new
reading would be cleaned with another topic's history, and a group offset the broker kept
would skip the new records up to it.

So the orchestrator reads the topic's id (Kafka's `TopicId`) before it plans, and keeps it in
`<prefix>:pipeline:topic-ids`. When the id changed, the topic was recreated: it says so
loudly (an error in the log, `iot_pipeline_topic_recreations_total`, `make status`), forgets
every memory of the old topic, and starts the group at the new log's start.
"""

from __future__ import annotations

import logging

import redis
from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from iot_pipeline.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT = 15.0


def topic_id(settings: Settings, topic: str) -> str | None:
    """The topic's id as the brokers know it now (None when they cannot say: no such topic,
    a broker without topic ids; the check is then skipped, never failed)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers, "log_level": 3})
    try:
        futures = admin.describe_topics(TopicCollection([topic]), request_timeout=TIMEOUT)
        description = futures[topic].result(TIMEOUT)
    except (KafkaException, KeyError, TimeoutError) as exc:
        log.warning("topic %s: its id could not be read (%s); identity not checked", topic, exc)
        return None
    found = getattr(description, "topic_id", None)
    return str(found) if found is not None else None


def _ids_key(prefix: str) -> str:
    return f"{prefix}:pipeline:topic-ids"


def recreations_key(prefix: str) -> str:
    """Counter of the recreated topics detected (read by the run state)."""
    return f"{prefix}:pipeline:topic-recreations"


def check_identity(client: redis.Redis, prefix: str, topic: str, current: str | None) -> bool:
    """Remember the topic's id; True (and the old topic's memories forgotten) when it
    changed since the last run, i.e. the topic was deleted and created again."""
    if current is None:
        return False
    raw = client.hget(_ids_key(prefix), topic)
    known = raw.decode() if isinstance(raw, bytes) else raw
    if known == current:
        return False
    if known is not None:
        forgotten = forget_topic(client, prefix, topic)
        client.incr(recreations_key(prefix))
        log.error(
            "topic %s was deleted and created again (id %s, now %s): its %d remembered "
            "checkpoints, dead-letter notes, failures and commit clocks are forgotten and "
            "the group starts at the new log's start",
            topic,
            known,
            current,
            forgotten,
        )
    client.hset(_ids_key(prefix), topic, current)
    return known is not None


def forget_topic(client: redis.Redis, prefix: str, topic: str) -> int:
    """Delete everything remembered of the topic by name; returns how many entries went."""
    patterns = [
        f"{prefix}:cleaner-state:{topic}:*",
        f"{prefix}:cleaner-ring:{topic}:*",
        f"{prefix}:cleaner-state:replay:*:{topic}:*",
        f"{prefix}:dead-letter-notes:{topic}:*",
        f"{prefix}:dead-lettered:{topic}:*",
    ]
    keys = [key for pattern in patterns for key in client.scan_iter(match=pattern, count=1000)]
    gone = int(client.delete(*keys)) if keys else 0
    for name in ("range-failures", "commits", "lost"):
        key = f"{prefix}:pipeline:{name}"
        fields = [
            f
            for f in client.hkeys(key)
            if (f.decode() if isinstance(f, bytes) else str(f)).startswith(f"{topic}:")
        ]
        if fields:
            gone += int(client.hdel(key, *fields))
    return gone
