"""Real Celery worker processes for tests: started with a test's own settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import redis
from celery import Celery

from iot_pipeline.settings import Settings

from support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process use these settings."""
    return {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "SEARCH_URL": settings.search_url,
        "SEARCH_INDEX_PREFIX": settings.search_index_prefix,
        "KAFKA_BROKERS": settings.kafka_brokers,
        "KAFKA_SENSOR_DATA_TOPIC": settings.kafka_sensor_data_topic,
        "KAFKA_DLQ_TOPIC": settings.dead_letter_topic,
        "ETL_CONSUMER_GROUP": settings.etl_consumer_group,
        "ETL_TASK_TIMEOUT_SECONDS": str(settings.etl_task_timeout_seconds),
        # a login of its own (the secured engine's tests); none on the native stack
        "SEARCH_USERNAME": settings.search_username,
        "SEARCH_PASSWORD": settings.search_password.get_secret_value(),
        **extra,
    }


def start_worker(
    settings: Settings, name: str, log: Path | None = None, **extra_env: str
) -> subprocess.Popen[bytes]:
    """`celery/tasks/worker.py` as `make up` runs it, one process, with these settings;
    its output goes to `log` when given."""
    output = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "celery/tasks/worker.py"),
            "--concurrency",
            "1",
            "--hostname",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=settings_env(settings, **extra_env),
        stdout=output,
        stderr=output,
        start_new_session=True,
    )


def wait_ready(client: Celery, name: str, timeout: float = 60) -> None:
    def answering() -> bool:  # a ping waits a second for the replies
        replies = client.control.ping(timeout=1.0) or []  # None only when no reply is asked
        return any(name in host for reply in replies for host in reply)

    eventually(answering, timeout, f"worker {name} up", interval=0)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        process.wait(60)


def backfill(
    settings: Settings,
    start: str,
    count: int,
    seed: int,
    interval: float = 5,
    faults: tuple[str, ...] = (),
    base_faults: str = "default",
) -> None:
    """`data_generator/producer.py backfill` into the settings' topic (faults: `kind=rate`
    added to the `default` or `none` base rates)."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "data_generator/producer.py"),
            "backfill",
            "--start",
            start,
            "--interval",
            str(interval),
            "--count",
            str(count),
            "--seed",
            str(seed),
            "--topic",
            settings.kafka_sensor_data_topic,
            "--progress-every",
            "0",
            "--faults",
            base_faults,
            *(arg for fault in faults for arg in ("--fault-rate", fault)),
        ],
        check=True,
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )


def drop_queued(settings: Settings, task: str, queue: str = "processing") -> int:
    """Take back from the broker the messages of `task` that no worker of the test took (so
    that no later test's worker gets them); returns how many."""
    broker = redis.Redis.from_url(settings.redis_url)
    try:
        name = f'"{task}"'.encode()
        queued = [m for m in broker.lrange(queue, 0, -1) if isinstance(m, bytes) and name in m]
        removed = 0
        for message in queued:
            # redis-py types LREM's value as str; the element as read (bytes) is what it matches
            removed += broker.lrem(queue, 1, message)  # type: ignore[arg-type]
        return removed
    finally:
        broker.close()


def make_status(settings: Settings) -> subprocess.CompletedProcess[str]:
    """`make status` (the stack's status command) as these settings see the pipeline."""
    return subprocess.run(
        [sys.executable, "-m", "iot_pipeline.stack", "status"],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
