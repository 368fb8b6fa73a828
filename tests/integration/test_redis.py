"""Redis for real, in the tests' own database."""

from collections.abc import Iterator

import pytest
import redis

from iot_pipeline.settings import Settings


@pytest.fixture
def client(test_settings: Settings, run_id: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(test_settings.redis_url, decode_responses=True)
    yield client
    for key in client.scan_iter(f"test:{run_id}:*"):
        client.delete(key)
    client.close()


def test_round_trip_with_expiry(client: redis.Redis, run_id: str) -> None:
    key = f"test:{run_id}:greeting"
    assert client.set(key, "salam", ex=60)
    assert client.get(key) == "salam"
    assert 0 < client.ttl(key) <= 60


def test_queue_semantics(client: redis.Redis, run_id: str) -> None:
    queue = f"test:{run_id}:queue"
    client.rpush(queue, "a", "b", "c")
    assert [client.lpop(queue) for _ in range(3)] == ["a", "b", "c"]
    assert client.lpop(queue) is None


def test_tests_use_their_own_database(client: redis.Redis, base_settings: Settings) -> None:
    assert (
        client.connection_pool.connection_kwargs["db"]
        != redis.Redis.from_url(base_settings.redis_url).connection_pool.connection_kwargs["db"]
    )
