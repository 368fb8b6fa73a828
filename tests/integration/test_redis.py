"""Redis for real, in the tests' own database."""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from iot_pipeline.settings import Settings
from iot_pipeline.stack.redis_service import snapshot_to_aof

from support.waiting import eventually


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


def _own_redis(data: Path, sock: Path, *options: str) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    assert server is not None
    process = subprocess.Popen(
        [server, "--port", "0", "--unixsocket", str(sock), "--dir", str(data), *options],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(unix_socket_path=str(sock))
    eventually(
        client.ping, 30, "redis-server's start", interval=0.05, ignoring=(redis.ConnectionError,)
    )
    return process


def test_a_snapshot_of_an_older_version_survives_the_switch_to_aof(tmp_path: Path) -> None:
    """Started with `appendonly yes` on a folder holding only dump.rdb, Redis would come up
    empty; `make up` first writes the append-only file from the snapshot."""
    data, sock = tmp_path / "data", tmp_path / "r.sock"
    data.mkdir()
    old = _own_redis(data, sock, "--appendonly", "no")
    client = redis.Redis(unix_socket_path=str(sock))
    client.mset({f"iot:cleaner-state:t:{i}": f"state-{i}" for i in range(50)})
    client.shutdown(save=True)
    old.wait(30)
    assert (data / "dump.rdb").exists()

    server = shutil.which("redis-server")
    assert server is not None
    snapshot_to_aof(server, data)

    assert (data / "appendonlydir").is_dir()
    new = _own_redis(data, sock, "--appendonly", "yes")
    try:
        client = redis.Redis(unix_socket_path=str(sock))
        assert client.dbsize() == 50
        assert client.get("iot:cleaner-state:t:7") == b"state-7"
    finally:
        new.terminate()
        new.wait(30)
