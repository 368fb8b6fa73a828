"""The simulator against the real broker, through its command line."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from iot_pipeline.schema import SensorReading
from iot_pipeline.settings import Settings

from support.kafka_io import consume_all, coordinates, key_of, value_of
from support.partitioning import kafka_murmur2_partition

ROOT = Path(__file__).resolve().parents[2]
PRODUCER = ROOT / "data_generator" / "producer.py"
STRUCTURAL = {"malformed_json", "missing_field", "extra_field", "wrong_type"}


def _run(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BROKERS": settings.kafka_brokers}
    return subprocess.run(
        [sys.executable, str(PRODUCER), *args, "--progress-every", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def _summary(stdout: str) -> dict[str, str]:
    line = next(line for line in stdout.splitlines() if line.startswith("generator done:"))
    return dict(re.findall(r"(\w+)=(\S+)", line))


def _labels(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_backfill_round_trip(
    test_settings: Settings, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic()
    labels_path = tmp_path / "labels.jsonl"
    start, end = "2026-11-01T00:00:00Z", "2026-11-01T06:00:00Z"
    result = _run(
        test_settings,
        "backfill",
        "--start",
        start,
        "--end",
        end,
        "--interval",
        "60",
        "--seed",
        "21",
        "--topic",
        topic,
        "--labels",
        str(labels_path),
    )
    assert result.returncode == 0, result.stderr
    summary = _summary(result.stdout)
    assert summary["acked"] == summary["sent"]
    assert summary["failed"] == "0"

    messages = consume_all(test_settings, topic, int(summary["sent"]))
    assert len(messages) == int(summary["sent"])

    faults_by_digest: dict[str, set[str]] = defaultdict(set)
    for label in _labels(labels_path):
        faults_by_digest[label["sha1"]].update(label["faults"])
    digests = {hashlib.sha1(value_of(m), usedforsecurity=False).hexdigest() for m in messages}
    assert set(faults_by_digest) <= digests, "every label names a message that was produced"

    lo = datetime.fromisoformat(start).timestamp()
    hi = datetime.fromisoformat(end).timestamp()
    partitions: dict[bytes, set[int]] = defaultdict(set)
    valid = 0
    for message in messages:
        key, value = key_of(message), value_of(message)
        partitions[key].add(coordinates(message)[0])
        faults = faults_by_digest.get(hashlib.sha1(value, usedforsecurity=False).hexdigest(), set())
        try:
            reading = SensorReading.model_validate_json(value)
        except ValidationError:
            assert faults & STRUCTURAL, value[:200]
            continue
        assert not faults & STRUCTURAL
        valid += 1
        assert key == reading.sensor_id.encode()
        moment = reading.event_time.timestamp()
        if "clock_skew" in faults:
            assert moment > time.time()
        else:
            assert lo <= moment < hi, reading.event_time
    assert valid > 0.97 * len(messages)
    for key, seen in partitions.items():
        assert seen == {kafka_murmur2_partition(key, 6)}, key


def test_same_seed_same_stream(test_settings: Settings, make_topic: Callable[..., str]) -> None:
    streams = []
    for suffix in ("a", "b"):
        topic = make_topic(suffix)
        result = _run(
            test_settings,
            "backfill",
            "--start",
            "2026-10-01T00:00Z",
            "--count",
            "4000",
            "--seed",
            "77",
            "--topic",
            topic,
            # clock-skewed events are dated relative to the wall clock, on purpose
            "--fault-rate",
            "clock_skew=0",
        )
        assert result.returncode == 0, result.stderr
        sent = int(_summary(result.stdout)["sent"])
        per_partition: dict[int, list[bytes]] = defaultdict(list)
        for message in consume_all(test_settings, topic, sent):
            per_partition[coordinates(message)[0]].append(value_of(message))
        streams.append(per_partition)
    assert streams[0] == streams[1]


def test_sigterm_flushes_and_loses_nothing_acknowledged(
    test_settings: Settings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic()
    env = {**os.environ, "KAFKA_BROKERS": test_settings.kafka_brokers}
    process = subprocess.Popen(
        [
            sys.executable,
            str(PRODUCER),
            "live",
            "--rate",
            "4000",
            "--topic",
            topic,
            "--progress-every",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    time.sleep(4)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr
    summary = _summary(stdout)
    acked = int(summary["acked"])
    assert acked > 1000
    assert acked == int(summary["sent"])
    assert len(consume_all(test_settings, topic, acked + 1, idle_seconds=5)) == acked


def test_unreachable_broker_is_a_clear_error(test_settings: Settings) -> None:
    result = _run(
        test_settings.model_copy(update={"kafka_brokers": "127.0.0.1:1"}), "live", "--count", "1"
    )
    assert result.returncode == 2
    assert "cannot reach Kafka at 127.0.0.1:1" in result.stderr


def test_missing_topic_is_a_clear_error(test_settings: Settings, run_id: str) -> None:
    result = _run(test_settings, "live", "--count", "1", "--topic", f"test.{run_id}.absent")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
