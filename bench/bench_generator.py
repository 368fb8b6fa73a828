"""Benchmark: simulator throughput into the local broker vs Kafka's own producer perf tool.

Both produce the same number of records of the same average size, with acks=all, the same
compression, linger and batch size, to fresh 6-partition topics on the running stack. Each
is run --repeat times in this invocation; medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from iot_pipeline.generator.faults import FaultRates
from iot_pipeline.generator.network import build_network
from iot_pipeline.generator.stream import ReadingStream
from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.jvm_services import java_executable
from iot_pipeline.stack.model import StackPaths

ROOT = Path(__file__).resolve().parents[1]
COMPRESSION = "lz4"
PRODUCER_PROPS = {
    "acks": "all",
    "enable.idempotence": "true",
    "compression.type": COMPRESSION,
    "linger.ms": "25",
    "batch.size": "1000000",
}


def _topic(admin: AdminClient, name: str) -> str:
    admin.create_topics([NewTopic(name, num_partitions=6, replication_factor=1)])[name].result(30)
    return name


def encode_only(count: int) -> float:
    """Readings/s of the stream alone (model + faults + JSON), no Kafka."""
    network = build_network(np.random.default_rng(1))
    stream = ReadingStream(network, FaultRates(), 1, 1.0, 1.79e9)
    produced = 0
    started = time.perf_counter()
    k = 0
    while produced < count:
        times = 1.79e9 + np.arange(k, k + 100, dtype=float)
        for batch in stream.rounds(times, now=time.time()):
            produced += len(batch.values)
        k += 100
    return produced / (time.perf_counter() - started)


def run_generator(topic: str, count: int) -> tuple[float, int, int]:
    """(messages/s, messages, bytes) of one backfill run."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "data_generator" / "producer.py"),
            "backfill",
            "--start",
            "2026-11-01T00:00Z",
            "--count",
            str(count),
            "--seed",
            "1",
            "--topic",
            topic,
            "--compression",
            COMPRESSION,
            "--progress-every",
            "0",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    fields = dict(re.findall(r"(\w+)=(\S+)", result.stdout.splitlines()[-1]))
    sent = int(fields["sent"])
    return sent / float(fields["elapsed"].rstrip("s")), sent, int(fields["bytes"])


def run_perf_tool(settings: StackSettings, topic: str, count: int, size: int) -> float:
    """records/s reported by org.apache.kafka.tools.ProducerPerformance."""
    lib = StackPaths.from_settings(settings).lib / "kafka"
    props = [f"bootstrap.servers={settings.kafka_brokers}"] + [
        f"{k}={v}" for k, v in PRODUCER_PROPS.items()
    ]
    result = subprocess.run(
        [
            java_executable(settings),
            "-Xmx512m",
            "-cp",
            f"{lib}/*",
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(count),
            "--record-size",
            str(size),
            "--throughput",
            "-1",
            "--producer-props",
            *props,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    last = [line for line in result.stdout.splitlines() if "records sent" in line][-1]
    match = re.search(r"([\d.]+) records/sec", last)
    if match is None:
        raise RuntimeError(f"unexpected ProducerPerformance output: {last}")
    return float(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    settings = StackSettings()
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    run = uuid.uuid4().hex[:8]
    topics: list[str] = []
    print(
        f"bench: {args.records:,} records x {args.repeat} runs each, acks=all, {COMPRESSION}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M}Z",
        flush=True,
    )
    try:
        encode = encode_only(min(args.records, 500_000))
        gen_rates, tool_rates = [], []
        size = 0
        for i in range(args.repeat):
            topics.append(_topic(admin, f"bench.{run}.generator.{i}"))
            rate, sent, sent_bytes = run_generator(topics[-1], args.records)
            gen_rates.append(rate)
            size = round(sent_bytes / sent)
            print(
                f"  generator run {i + 1}: {rate:,.0f} readings/s ({sent:,} sent, {size} B avg)",
                flush=True,
            )
            topics.append(_topic(admin, f"bench.{run}.perftool.{i}"))
            tool_rates.append(run_perf_tool(settings, topics[-1], sent, size))
            print(f"  kafka perf tool run {i + 1}: {tool_rates[-1]:,.0f} records/s", flush=True)
    finally:
        if topics:
            for future in admin.delete_topics(topics).values():
                future.result(30)
    generator, tool = statistics.median(gen_rates), statistics.median(tool_rates)
    print()
    print(f"{'what':<44} {'records/s':>12} {'MB/s':>8} {'ratio':>7}")
    print(
        f"{'kafka ProducerPerformance (baseline)':<44} {tool:>12,.0f} "
        f"{tool * size / 1e6:>8.1f} {1:>7.2f}"
    )
    print(
        f"{'generator backfill (median)':<44} {generator:>12,.0f} "
        f"{generator * size / 1e6:>8.1f} {generator / tool:>7.2f}"
    )
    print(
        f"{'generator stream only, no Kafka (info)':<44} {encode:>12,.0f} {'':>8} "
        f"{encode / tool:>7.2f}"
    )
    goal = "met" if generator >= 100_000 and generator / tool >= 0.3 else "NOT met"
    print(f"\ngoal (>= 100k readings/s and >= 0.3 of the tool): {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
