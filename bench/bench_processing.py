"""Benchmark: readings/s through clean + index (+ aggregates), against a raw bulk load of
the very same documents (pre-serialised NDJSON, same template, same bulk size) into the same
node, all in this invocation: in process, then through a Celery worker dispatched as the
orchestrator does, with one process and with the deployment's WORKER_CONCURRENCY processes at
ETL_RANGE_RECORDS per task (the headline: processing with aggregates vs raw bulk). The live
simulator is stopped while it measures, as in bench_sustained's drain.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_budget import CpuMeter, documents_rows, documents_written, simulator_stopped

from iot_pipeline.cleaning import CleaningPolicy, clean_batch
from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.contracts.readings import reading_actions
from iot_pipeline.contracts.reports import BatchSummary
from iot_pipeline.contracts.tasks import create_app
from iot_pipeline.kafka_config import consumer_config
from iot_pipeline.processing import across_partitions, dead_letters
from iot_pipeline.processing.pipeline import ACROSS_READINGS, process_range
from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.model import StackPaths
from iot_pipeline.stack.supervisor import Supervisor
from iot_pipeline.storage import BulkPolicy, load_templates, make_store
from iot_pipeline.vocabulary import DUPLICATE

ROOT = Path(__file__).resolve().parents[1]
BULK_DOCS = BulkPolicy().max_docs
ROUNDS = 5


def backfill(topic: str, start: datetime, count: int, seed: int, *extra: str) -> None:
    """`producer.py backfill` of `count` readings from `start` into `topic`, quietly."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "data_generator/producer.py"),
            "backfill",
            "--start",
            start.strftime("%Y-%m-%dT%H:%MZ"),
            "--count",
            str(count),
            "--seed",
            str(seed),
            "--topic",
            topic,
            "--progress-every",
            "0",
            *extra,
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )


def _produce(settings: StackSettings, count: int) -> dict[int, int]:
    day = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0)
    backfill(settings.kafka_sensor_data_topic, day, count, 3, "--interval", "5")
    consumer = Consumer(consumer_config(settings, "bench.watermarks"))
    ends = {}
    for p in range(6):
        _, ends[p] = consumer.get_watermark_offsets(
            TopicPartition(settings.kafka_sensor_data_topic, p), timeout=10
        )
    consumer.close()
    return ends


def _ranges(
    settings: StackSettings, ends: dict[int, int], per_task: int, per_run: bool = False
) -> list[RangeTask]:
    now = datetime.now(UTC)
    return [
        RangeTask.of(
            "bench",
            now,
            OffsetRange(
                topic=settings.kafka_sensor_data_topic,
                partition=p,
                start=s,
                end=min(s + per_task, end),
            ),
            per_run=per_run,
        )
        for p, end in ends.items()
        for s in range(0, end, per_task)
    ]


def _reset(settings: StackSettings, state: redis.Redis) -> None:
    store = make_store(settings)
    store.delete_indices(store.list_indices(f"{settings.search_index_prefix}-*"))
    store.ensure_templates(load_templates(ROOT / "elasticsearch", settings.search_index_prefix))
    store.close()
    state.flushdb()


def raw_bulk_load(settings: StackSettings, ends: dict[int, int]) -> tuple[float, int]:
    """Build the pipeline's documents untimed, then time only the bulk HTTP requests."""
    from iot_pipeline.processing.reader import read_range

    lines: list[bytes] = []
    now = datetime.now(UTC)
    for task in _ranges(settings, ends, 10**9):
        records = read_range(settings, task.range)
        result = clean_batch(records, {}, now, CleaningPolicy())
        fresh = [c for c in result.readings if DUPLICATE not in c.flags]
        for action in reading_actions(settings.search_index_prefix, fresh, "raw", now).actions:
            lines.append(json.dumps({"index": {"_index": action.index, "_id": action.id}}).encode())
            lines.append(json.dumps(action.document).encode())
    bodies = [
        b"\n".join(lines[i : i + 2 * BULK_DOCS]) + b"\n"
        for i in range(0, len(lines), 2 * BULK_DOCS)
    ]
    started = time.perf_counter()
    for body in bodies:
        request = urllib.request.Request(  # noqa: S310 - loopback, from settings
            f"{settings.search_url}/_bulk",
            data=body,
            headers={"Content-Type": "application/x-ndjson"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            if json.loads(response.read())["errors"]:
                raise RuntimeError("raw bulk load had item errors")
    return time.perf_counter() - started, len(lines) // 2


def in_process(
    settings: StackSettings,
    ends: dict[int, int],
    per_task: int,
    state: redis.Redis,
    aggregate: bool,
    per_run: bool = False,
) -> tuple[float, int, dict[str, float]]:
    """(seconds, records, seconds per stage) of process_range called directly; `per_run`:
    as the ETL runs them (what spans partitions settled once, after every range)."""
    store = make_store(settings)
    started = time.perf_counter()
    records = 0
    stages: dict[str, float] = {}
    for task in _ranges(settings, ends, per_task, per_run):
        report = process_range(settings, store, state, task, aggregate=aggregate)
        records += report.records
        for stage, seconds in report.stages.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    if per_run:
        lap = time.perf_counter()
        prefix, interval = settings.search_index_prefix, settings.sensor_sample_interval_seconds
        across_partitions.settle(state, store, prefix, interval)
        stages["settle"] = time.perf_counter() - lap
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed, records, stages


def _wait_for_leader(settings: StackSettings, topic: str) -> None:
    """A new topic has no leader for a moment; the first dead letter must not pay for it."""
    producer = dead_letters.dead_letter_producer(settings)  # the pipeline's own producer
    for _ in range(100):
        partitions = producer.list_topics(topic, timeout=5).topics[topic].partitions
        if partitions and all(p.leader >= 0 for p in partitions.values()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no leader")


@contextmanager
def bench_worker(settings: StackSettings, processes: int) -> Iterator[subprocess.Popen[bytes]]:
    """A Celery worker of the benchmark's own pipeline with `processes` processes, answering
    pings; stopped when the block ends."""
    app = create_app(settings)
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "SEARCH_INDEX_PREFIX": settings.search_index_prefix,
        "KAFKA_DLQ_TOPIC": settings.dead_letter_topic,
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "celery/tasks/worker.py"),
            "--concurrency",
            str(processes),
            "--hostname",
            f"bench-{uuid.uuid4().hex[:6]}@%h",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not app.control.ping(timeout=1.0):
            pass
        yield worker
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)


def run_as_etl(settings: StackSettings, ends: dict[int, int], per_task: int) -> BatchSummary:
    """Every record of the bench topic through the running bench worker, dispatched as the
    orchestrator does (a partition's ranges in order, partitions side by side, then the run's
    settle); raises when anything failed."""
    from iot_pipeline.orchestration.batches import run_tasks, settle_run

    app = create_app(settings)
    tasks = _ranges(settings, ends, per_task, per_run=True)
    summary = run_tasks(app, tasks, timeout=1800, poll=0.05)
    _, error = settle_run(app, "bench", 1800)
    if summary.failures or error:
        raise RuntimeError(f"bench ranges failed: {summary.failures[:3]} {error or ''}")
    return summary


def via_celery(
    settings: StackSettings, ends: dict[int, int], per_task: int, processes: int
) -> tuple[float, float, int]:
    """(wall seconds, seconds inside tasks, records) through a Celery worker of `processes`
    processes, run as the ETL runs its ranges."""
    with bench_worker(settings, processes):
        started = time.perf_counter()
        summary = run_as_etl(settings, ends, per_task)
        wall = time.perf_counter() - started
    return wall, summary.seconds, summary.records


def old_reading_cost(
    settings: StackSettings, state: redis.Redis, rounds: int = 3
) -> tuple[float, float]:
    """Median seconds of the aggregate stage for a range of 20,000 fresh readings, and for the
    same range plus one reading 29 days old (a batch's time span must not drive the cost)."""
    from confluent_kafka import Producer

    from iot_pipeline.kafka_config import producer_config

    mixed = settings.model_copy(
        update={"kafka_sensor_data_topic": f"{settings.kafka_sensor_data_topic}.mixed"}
    )
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    for future in admin.create_topics(
        [NewTopic(mixed.kafka_sensor_data_topic, num_partitions=1, replication_factor=1)]
    ).values():
        future.result(30)
    try:
        backfill(
            mixed.kafka_sensor_data_topic,
            datetime.now(UTC) - timedelta(hours=2),
            20000,
            4,
            "--interval",
            "5",
            "--faults",
            "none",
        )
        from iot_pipeline.processing.reader import read_range

        consumer = Consumer(consumer_config(mixed, "bench.watermarks"))
        _, fresh = consumer.get_watermark_offsets(
            TopicPartition(mixed.kafka_sensor_data_topic, 0), timeout=10
        )
        consumer.close()
        whole = OffsetRange(topic=mixed.kafka_sensor_data_topic, partition=0, start=0, end=fresh)
        first = json.loads(read_range(mixed, whole.model_copy(update={"end": 1}))[0].value)
        old = datetime.now(UTC) - timedelta(days=29)
        first |= {"event_id": "bench-old", "event_time": old.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
        producer = Producer(producer_config(mixed))
        producer.produce(
            mixed.kafka_sensor_data_topic, json.dumps(first).encode(), first["sensor_id"].encode()
        )
        producer.flush(30)
        seconds: dict[int, list[float]] = {fresh: [], fresh + 1: []}
        store = make_store(mixed)
        for _ in range(rounds):
            for end in seconds:
                _reset(mixed, state)
                task = RangeTask.of(
                    "bench-old", datetime.now(UTC), whole.model_copy(update={"end": end})
                )
                report = process_range(mixed, store, state, task)
                seconds[end].append(sum(report.stages.get(s, 0.0) for s in ACROSS_READINGS))
        store.close()
        return statistics.median(seconds[fresh]), statistics.median(seconds[fresh + 1])
    finally:
        for future in admin.delete_topics([mixed.kafka_sensor_data_topic]).values():
            future.result(30)


def bench_pipeline(base: StackSettings) -> tuple[StackSettings, AdminClient, list[str]]:
    """StackSettings of a pipeline of the benchmark's own (topics, index prefix, Redis db 14),
    with its data topic (6 partitions) and dead-letter topic created."""
    run = uuid.uuid4().hex[:8]
    host, port = base.redis_address
    settings = base.model_copy(
        update={
            "kafka_sensor_data_topic": f"bench.{run}.readings",
            "kafka_dlq_topic": f"bench.{run}.dlq",
            "search_index_prefix": f"bench-{run}",
            "redis_url": f"redis://{host}:{port}/14",
        }
    )
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    topics = [settings.kafka_sensor_data_topic, settings.dead_letter_topic]
    for future in admin.create_topics(
        [
            NewTopic(t, num_partitions=6 if i == 0 else 1, replication_factor=1)
            for i, t in enumerate(topics)
        ]
    ).values():
        future.result(30)
    return settings, admin, topics


class _Cpu:
    """CPU seconds of this process (the pipeline, in process) and of the search engine (the
    native stack's node) over one measured call."""

    def __init__(self, settings: StackSettings) -> None:
        engine = Supervisor(StackPaths.from_settings(settings)).pid("opensearch")
        self.meter = CpuMeter({"engine": [engine]}) if engine else None
        self.rows: list[tuple[str, float | None, float | None]] = []

    def measure(self, what: str, readings: int, call: Any, pipeline: bool = True) -> Any:
        first = self.meter.sample() if self.meter else None
        mine = time.process_time()
        result = call()
        own = time.process_time() - mine
        engine = None
        if self.meter is not None and first is not None:
            engine = self.meter.between(first, self.meter.sample())["engine"] / readings * 1e6
        self.rows.append((what, own / readings * 1e6 if pipeline else None, engine))
        return result

    def table(self) -> list[str]:
        lines = [f"{'CPU per reading (µs)':<52} {'pipeline':>9} {'engine':>9} {'total':>9}"]
        for what, own, engine in self.rows:
            cells = [f"{v:>9.1f}" if v is not None else f"{'-':>9}" for v in (own, engine)]
            total = sum(v for v in (own, engine) if v is not None)
            lines.append(f"{what:<52} {cells[0]} {cells[1]} {total:>9.1f}")
        return lines


def _bench() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=120_000)
    args = parser.parse_args()
    settings, admin, topics = bench_pipeline(StackSettings())
    state = redis.Redis.from_url(settings.redis_url)
    rows: list[tuple[str, float, str]] = []
    cpu = _Cpu(settings)
    old_cost: tuple[float, float] | None = None
    written: list[list[str]] = []
    try:
        ends = _produce(settings, args.records)
        print(
            f"bench: {sum(ends.values()):,} records in 6 partitions, bulk {BULK_DOCS} docs",
            flush=True,
        )
        _wait_for_leader(settings, settings.dead_letter_topic)
        # Untimed warm-up of both paths (the JVM compiles its indexing code on first use).
        _reset(settings, state)
        raw_bulk_load(settings, ends)
        _reset(settings, state)
        in_process(settings, ends, 5000, state, aggregate=False)
        raw_rates: list[float] = []
        rates: list[float] = []
        count = sum(ends.values())
        for round_ in range(1, ROUNDS + 1):
            _reset(settings, state)
            # the last round also says where the CPU went (the pipeline's own for the raw
            # load would be the untimed building of its documents: left out)
            measured = round_ == ROUNDS
            raw = partial(raw_bulk_load, settings, ends)
            if measured:
                raw = partial(cpu.measure, "raw bulk load (baseline)", count, raw, False)
            seconds, docs = raw()
            raw_rates.append(docs / seconds)
            _reset(settings, state)
            plain = partial(in_process, settings, ends, 5000, state, aggregate=False)
            if measured:
                plain = partial(cpu.measure, "read + clean + index + dead letters", count, plain)
            seconds, records, stages = plain()
            rates.append(records / seconds)
            print(
                f"  round {round_}: raw bulk {raw_rates[-1]:,.0f} docs/s, "
                f"read + clean + index {rates[-1]:,.0f} readings/s "
                f"(ratio {rates[-1] / raw_rates[-1]:.2f})",
                flush=True,
            )
        raw_rate = statistics.median(raw_rates)
        rows.append(
            ("raw bulk load of the same documents (baseline)", raw_rate, f"median of {ROUNDS}")
        )
        rows.append(
            (
                "read + clean + index + dead letters, 5000/task",
                statistics.median(rates),
                f"median of {ROUNDS}",
            )
        )
        # Aggregates, both ways: each range doing all its work (before issue 29), and the
        # ETL's way, what spans partitions settled once per run.
        for label, per_run in (("each range on its own", False), ("per run (the ETL)", True)):
            _reset(settings, state)
            seconds, records, stages = cpu.measure(
                f"... + window aggregates, {label}",
                count,
                partial(in_process, settings, ends, 5000, state, True, per_run),
            )
            written.append(
                documents_rows(
                    {},
                    documents_written(settings.search_url, settings.search_index_prefix),
                    records,
                    f"documents written per reading, {label}",
                )
            )
            breakdown = ", ".join(f"{k} {v / seconds:.0%}" for k, v in stages.items())
            rows.append((f"... + aggregates, {label}, 5000/task", records / seconds, breakdown))
            print(f"  with aggregates, {label}: {records / seconds:,.0f} readings/s", flush=True)
        processes = settings.worker_concurrency
        for per_task, workers in ((5000, 1), (20000, 1), (settings.etl_range_records, processes)):
            _reset(settings, state)
            wall, inside, records = via_celery(settings, ends, per_task, workers)
            rows.append(
                (
                    f"+ aggregates via Celery, {workers} process(es), {per_task}/task",
                    records / wall,
                    f"in tasks {inside:.1f}s of {wall:.1f}s wall",
                )
            )
            print(
                f"  celery {workers}x, {per_task}/task: {records / wall:,.0f} readings/s",
                flush=True,
            )
        print("  aggregate cost of a range with one reading 29 days old", flush=True)
        old_cost = old_reading_cost(settings, state)
    finally:
        _reset(settings, state)
        make_store(settings).delete_indices(
            make_store(settings).list_indices(f"{settings.search_index_prefix}-*")
        )
        state.flushdb()
        for future in admin.delete_topics(topics).values():
            future.result(30)
    print()
    print(f"{'what':<52} {'per second':>11} {'ratio':>6}  note")
    for name, rate, note in rows:
        print(f"{name:<52} {rate:>11,.0f} {rate / raw_rate:>6.2f}  {note}")
    if cpu.rows:
        print()
        print("\n".join(cpu.table()))
    for lines in written:
        print()
        print("\n".join(lines))
    if old_cost:
        fresh_s, old_s = old_cost
        print()
        print(f"{'aggregate stage of one 20,000-reading range':<52} {'seconds':>11} {'ratio':>6}")
        print(f"{'  only fresh readings (baseline)':<52} {fresh_s:>11.2f} {1.0:>6.2f}")
        print(
            f"{'  the same + one reading 29 days old':<52} {old_s:>11.2f} {old_s / fresh_s:>6.2f}"
        )
    return 0


def main() -> int:
    """The bench with the live simulator stopped (cpu_budget.simulator_stopped)."""
    supervisor = Supervisor(StackPaths.from_settings(StackSettings()))
    with simulator_stopped(supervisor):
        return _bench()


if __name__ == "__main__":
    sys.exit(main())
