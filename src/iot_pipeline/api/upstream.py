"""Kafka and the ETL's run state in Redis as the API reads them; each outage its own error."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import redis
import redis.asyncio
from confluent_kafka import Consumer, KafkaException

from iot_pipeline.contracts.positions import PartitionPosition, group_positions
from iot_pipeline.contracts.run_state import RunState, parse_answers, state_commands
from iot_pipeline.errors import KafkaUnavailable, OffsetsError, RedisUnavailable
from iot_pipeline.kafka_config import open_consumer
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
            answers = await pipe.execute()
    except redis.RedisError as exc:
        raise RedisUnavailable(str(exc)) from exc
    return parse_answers(answers, settings.kafka_sensor_data_topic)


def _reachable(settings: Settings) -> bool:
    for broker in settings.kafka_brokers.split(","):
        try:
            with socket.create_connection(split_host_port(broker, 9092), timeout=1):
                return True
        except OSError:
            continue
    return False


class KafkaPositions:
    """The ETL group's positions as the API reads them (blocking: call from a thread).

    One consumer of the group per API process, kept open (never one per request), and each
    topic's answer, an outage included, reused for `ttl` seconds: a burst of requests costs
    Kafka one read. One read at a time (single flight): while it waits, other requests get
    the previous answer; a failed read closes the consumer, and the next read after the ttl
    opens a new one.
    """

    def __init__(self, settings: Settings, ttl: float) -> None:
        self.settings = settings
        self.ttl = ttl
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._answers: dict[str, tuple[float, list[PartitionPosition] | KafkaUnavailable]] = {}

    def read(self, topic: str) -> list[PartitionPosition]:
        """The topic's positions: a fresh answer, or, while another thread's read is in
        flight (a hung broker), the last answer however old, or KafkaUnavailable at once.
        Only one thread ever waits on Kafka; requests never queue behind it."""
        cached = self._answers.get(topic)
        if cached is None or time.monotonic() - cached[0] >= self.ttl:
            if self._lock.acquire(blocking=False):
                try:
                    cached = self._answers.get(topic)
                    if cached is None or time.monotonic() - cached[0] >= self.ttl:
                        cached = (time.monotonic(), self._read(topic))
                        self._answers[topic] = cached
                finally:
                    self._lock.release()
            elif cached is None:
                raise KafkaUnavailable(
                    "Kafka is slow to answer: an earlier read still waits for it"
                )
        answer = cached[1]
        if isinstance(answer, KafkaUnavailable):
            raise answer
        return answer

    def _read(self, topic: str) -> list[PartitionPosition] | KafkaUnavailable:
        # a closed port fails now, not after the client's metadata timeout
        if not _reachable(self.settings):
            self._close()
            return KafkaUnavailable(
                f"no broker of {self.settings.kafka_brokers} accepts connections"
            )
        try:
            if self._consumer is None:
                self._consumer = open_consumer(self.settings, self.settings.etl_consumer_group)
            return group_positions(self._consumer, topic)
        except (KafkaException, OffsetsError) as exc:
            self._close()
            if isinstance(exc, OffsetsError):
                return exc
            return OffsetsError(f"Kafka refused an offsets request: {exc}")

    def _close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            with contextlib.suppress(KafkaException, RuntimeError):
                consumer.close()

    def close(self) -> None:
        with self._lock:
            self._close()
