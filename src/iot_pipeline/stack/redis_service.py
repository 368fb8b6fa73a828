"""The stack's Redis: Celery's broker and result backend, and the pipeline's run state."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from iot_pipeline.contracts.probes import redis_health
from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.model import Service, StackError, StackPaths, require_loopback


def redis_service(settings: StackSettings, paths: StackPaths) -> Service:
    host, port = settings.redis_address
    require_loopback("REDIS_URL", host)
    data_dir = paths.data / "redis"
    server = shutil.which("redis-server")
    if server is None:
        raise StackError("redis-server not found: run `make setup` (installs it with apt)")
    command = [
        server,
        "--bind",
        host,
        "--port",
        str(port),
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--dir",
        str(data_dir),
        # durable broker state: the append-only file is fsynced every second, and memory is
        # bounded; when it is full, writes fail loudly instead of evicting queued tasks
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "60 1",
        "--maxmemory",
        settings.redis_maxmemory,
        "--maxmemory-policy",
        "noeviction",
        "--logfile",
        "",
    ]

    def prepare() -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        if (data_dir / "dump.rdb").exists() and not (data_dir / "appendonlydir").exists():
            snapshot_to_aof(server, data_dir)

    return Service("redis", (host, port), command, redis_health, prepare)


def snapshot_to_aof(server: str, data_dir: Path) -> None:
    """Turn an older version's snapshot (dump.rdb) into the append-only file.

    Started with `appendonly yes` and no AOF yet, Redis would start empty and ignore the
    snapshot, losing the pipeline's state (cleaner checkpoints, run state, dead-letter notes).
    So a Redis of our own, on a private socket, loads the snapshot and writes the AOF from it.
    """
    import redis

    # a socket path must stay short (108 bytes): a private temporary folder, not the stack's
    folder = tempfile.TemporaryDirectory(prefix="iot-redis-")
    sock = Path(folder.name) / "redis.sock"
    process = subprocess.Popen(
        [
            server,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(data_dir),
            "--appendonly",
            "no",
            "--save",
            "",
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=10)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise StackError(
                        f"redis-server could not load {data_dir / 'dump.rdb'}"
                    ) from None
                time.sleep(0.1)
        keys = client.dbsize()
        client.config_set("appendonly", "yes")
        while True:
            info = client.info("persistence")
            if (
                info.get("aof_enabled") == 1
                and not info.get("aof_rewrite_in_progress")
                and not info.get("aof_rewrite_scheduled")
            ):
                break
            if time.monotonic() > deadline:
                raise StackError("redis-server did not finish writing its append-only file")
            time.sleep(0.1)
        print(f"{'redis':<21} converted its snapshot ({keys} keys in db 0) to an append-only file")
        with contextlib.suppress(redis.ConnectionError):  # the server closes the connection
            client.shutdown(nosave=True)
    finally:
        client.close()
        if process.poll() is None:
            process.terminate()
        process.wait(30)
        folder.cleanup()
