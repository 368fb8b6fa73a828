"""The containers' commands against the real stack: the one-shot jobs, the health checks and
the JSON log lines `docker compose logs` shows (no Docker engine here: the same commands run
as processes, with the environment compose gives them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from confluent_kafka.admin import AdminClient

from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.contracts.tasks import PROCESS_RANGE, create_app
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.isolation import own_pipeline
from support.kafka_io import consume_all, coordinates
from support.waiting import eventually
from support.workers import ROOT, backfill, settings_env, start_worker, stop, wait_ready

pytestmark = pytest.mark.usefixtures("stack_ready")


def _run(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _health(component: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run(["-m", "iot_pipeline.container.health", component], env, timeout=60)


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "ctr") as own:
        yield own


def test_topics_job_creates_the_topics_then_finds_them(
    test_settings: Settings, run_id: str
) -> None:
    topic = f"test.{run_id}.jobs"
    env = settings_env(test_settings, KAFKA_SENSOR_DATA_TOPIC=topic, KAFKA_DLQ_TOPIC=f"{topic}.dlq")
    try:
        first = _run(["-m", "iot_pipeline.topics"], env)
        assert first.returncode == 0, first.stderr
        assert f"topic {topic}: created" in first.stdout
        again = _run(["-m", "iot_pipeline.topics"], env)
        assert f"topic {topic}: exists" in again.stdout
        metadata = AdminClient({"bootstrap.servers": test_settings.kafka_brokers}).list_topics(
            timeout=10
        )
        assert len(metadata.topics[topic].partitions) == 6  # kafka/topics.json
    finally:
        admin = AdminClient({"bootstrap.servers": test_settings.kafka_brokers})
        for future in admin.delete_topics([topic, f"{topic}.dlq"]).values():
            future.result(30)


def test_templates_job_applies_the_index_templates(test_settings: Settings, run_id: str) -> None:
    prefix = f"test-{run_id}-tpl"
    env = settings_env(test_settings, SEARCH_INDEX_PREFIX=prefix)
    done = _run(["-m", "iot_pipeline.storage.apply_templates", "--wait", "30"], env)
    assert done.returncode == 0, done.stderr
    assert f"{prefix}-readings" in done.stdout
    store = make_store(test_settings)
    try:
        client: Any = store.client  # type: ignore[attr-defined]
        names = {
            t["name"]
            for t in client.indices.get_index_template(name=f"{prefix}-*")["index_templates"]
        }
        assert {f"{prefix}-readings", f"{prefix}-aggregates"} <= names
        for name in names:
            client.indices.delete_index_template(name=name)
    finally:
        store.close()


def test_templates_job_fails_clearly_without_an_engine(test_settings: Settings) -> None:
    env = settings_env(test_settings, SEARCH_URL="http://127.0.0.1:1")
    done = _run(["-m", "iot_pipeline.storage.apply_templates", "--wait", "1"], env)
    assert done.returncode == 1
    assert "http://127.0.0.1:1 unreachable" in done.stderr


def test_api_health_check(base_settings: Settings) -> None:
    """`make up` runs the API; the container's check is the same probe."""
    ok = _health("api", settings_env(base_settings, API_PORT=str(base_settings.api_port)))
    assert ok.returncode == 0, ok.stdout
    assert "api: healthy" in ok.stdout
    down = _health("api", settings_env(base_settings, API_PORT="1"))
    assert down.returncode == 1
    assert "api: unhealthy" in down.stdout


@pytest.fixture(scope="module")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A worker named like the container's (`worker@<hostname>`), its output in a file."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    client = create_app(settings)
    client.control.purge()
    process = start_worker(settings, "worker", log=log, LOG_FORMAT="json")
    try:
        wait_ready(client, "worker@")
        yield log
    finally:
        stop(process)
        client.control.purge()
        client.close()


def test_worker_health_check_pings_its_own_worker(settings: Settings, worker: Path) -> None:
    ok = _health("worker", settings_env(settings))
    assert ok.returncode == 0, ok.stdout
    assert "answers" in ok.stdout
    # On another Redis database no worker of that name listens: unhealthy, not an exception.
    host, port = settings.redis_address
    down = _health("worker", settings_env(settings, REDIS_URL=f"redis://{host}:{port}/14"))
    assert down.returncode == 1
    assert "did not answer" in down.stdout


def test_worker_logs_one_json_object_per_line_with_the_batch(
    settings: Settings, worker: Path
) -> None:
    backfill(settings, "2026-11-27T06:00Z", 400, seed=21)
    messages = consume_all(settings, settings.kafka_sensor_data_topic, 10**6, idle_seconds=3)
    ends: dict[int, int] = {}
    for message in messages:
        partition, offset = coordinates(message)
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    client: Celery = create_app(settings)
    try:
        tasks = [
            RangeTask.of(
                "compose-logs-check",
                datetime(2026, 11, 27, 12, tzinfo=UTC),
                OffsetRange(topic=settings.kafka_sensor_data_topic, partition=p, start=0, end=e),
            )
            for p, e in sorted(ends.items())
        ]
        results = [client.send_task(PROCESS_RANGE, args=[t.model_dump(mode="json")]) for t in tasks]
        reports = [r.get(timeout=180) for r in results]
    finally:
        client.close()
    assert sum(r["records"] for r in reports) == len(messages)
    time.sleep(0.5)  # let the worker flush its last lines
    lines = [line for line in worker.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    # Outside the JSON lines only Python's warnings (here: running as root; containers run
    # as uid 10001) and Celery's shutdown notice: never a log record or a traceback.
    others = [line for line in lines if not line.startswith("{")]
    assert not [line for line in others if "Traceback" in line or "INFO" in line], others
    assert all(entry["service"] == "worker" for entry in parsed)
    ours = [entry for entry in parsed if entry.get("batch_id") == "compose-logs-check"]
    processed = [entry for entry in ours if entry["message"].startswith("processed")]
    assert len(processed) == len(ends), ours
    assert {entry["range"].split("]")[0] for entry in processed} == {
        f"{settings.kafka_sensor_data_topic}[{p}" for p in ends
    }
    assert any("ready" in entry["message"] and "hostname" in entry for entry in parsed)


def test_simulator_health_follows_its_heartbeat_and_logs_json(
    settings: Settings, tmp_path: Path
) -> None:
    beat = tmp_path / "generator.heartbeat"
    env = settings_env(
        settings,
        DATA_GENERATOR_HEARTBEAT_FILE=str(beat),
        DATA_GENERATOR_INTERVAL_SECONDS="1",
        LOG_FORMAT="json",
    )
    assert _health("generator", env).returncode == 1  # not started: no heartbeat yet
    process = subprocess.Popen(
        [
            sys.executable,
            "data_generator/producer.py",
            "live",
            "--progress-every",
            "1",
            "--duration",
            "6",
            "--topic",
            settings.kafka_sensor_data_topic,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        eventually(beat.exists, 30, "the generator's first heartbeat")
        healthy = _health("generator", env)
        assert healthy.returncode == 0, healthy.stdout
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    logged = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert logged, stdout
    assert {entry["service"] for entry in logged} == {"generator"}
    assert any(entry["message"].startswith("sent ") for entry in logged)
    # A stale heartbeat (the loop stopped) is unhealthy.
    old = time.time() - 120
    os.utime(beat, (old, old))
    stale = _health("generator", env)
    assert stale.returncode == 1
    assert "ago" in stale.stdout
