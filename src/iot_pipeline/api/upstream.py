"""Kafka and the ETL's run state in Redis as the API reads them; each outage its own error."""

from __future__ import annotations

import socket

import redis
import redis.asyncio

from iot_pipeline.errors import KafkaUnavailable, RedisUnavailable
from iot_pipeline.orchestration.offsets import PartitionPosition, positions
from iot_pipeline.orchestration.run_state import RunState, parse_state, state_commands
from iot_pipeline.settings import Settings, split_host_port

RECENT_QUARANTINES = 20  # quarantine entries shown by /pipeline/status
REDIS_TIMEOUT_SECONDS = 2.0


def make_state_client(settings: Settings) -> redis.asyncio.Redis:
    """The client of the run state (created in the server's event loop)."""
    return redis.asyncio.Redis.from_url(
        settings.redis_url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    )


async def read_run_state(
    client: redis.asyncio.Redis, settings: Settings, recent: int = RECENT_QUARANTINES
) -> RunState:
    """The run state of this deployment's sensor topic, read in one round trip."""
    try:
        async with client.pipeline(transaction=False) as pipe:
            state_commands(pipe, settings.search_index_prefix, recent)
            commits, failures, failed_runs, ranges, records, quarantine = await pipe.execute()
    except redis.RedisError as exc:
        raise RedisUnavailable(str(exc)) from exc
    return parse_state(
        commits,
        failures,
        failed_runs,
        ranges,
        records,
        quarantine,
        topic=settings.kafka_sensor_data_topic,
    )


def _reachable(settings: Settings) -> bool:
    for broker in settings.kafka_brokers.split(","):
        try:
            with socket.create_connection(split_host_port(broker, 9092), timeout=1):
                return True
        except OSError:
            continue
    return False


def kafka_positions(settings: Settings, topic: str) -> list[PartitionPosition]:
    """The ETL group's positions on `topic` (blocking: run it in a thread)."""
    # a closed port fails now, not after the client's metadata timeout
    if not _reachable(settings):
        raise KafkaUnavailable(f"no broker of {settings.kafka_brokers} accepts connections")
    return positions(
        settings, topic, settings.etl_consumer_group
    )  # OffsetsError is a KafkaUnavailable
