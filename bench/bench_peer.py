"""Benchmark: the pipeline beside a peer, in the same invocation on the same backlog and node.

The peer is Quix Streams (bench/peer/quix_app.py, in its own virtualenv built by
scripts/peer-venv.sh) doing the core of the job: validate, drop duplicate event ids, index the
readings, 1-minute and 1-hour tumbling windows per sensor indexed when they close. The
pipeline does all of its job: cleaning and quality control, dead letters, the sensor registry,
the rules across readings, sensor and district windows at 1 minute, 1 hour and 1 day, exact
under late data. Both run as WORKER_CONCURRENCY processes: the pipeline as a Celery worker fed
as the ETL feeds it (ETL_RANGE_RECORDS per task, a partition's ranges in order, then the run's
settle), the peer as that many members of one consumer group.

Printed, for each side's round with the median readings/s of ROUNDS (alternated): readings/s,
and CPU per reading of its own processes and of the search node.

The live simulator is stopped while both sides run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_processing import (
    _produce,
    _reset,
    _wait_for_leader,
    bench_pipeline,
    bench_worker,
    run_as_etl,
)
from cpu_budget import CpuMeter, simulator_stopped

from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.model import StackPaths
from iot_pipeline.stack.supervisor import Supervisor
from iot_pipeline.storage import make_store

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".stack/peer-venv/bin/python"
PEER_APP = ROOT / "bench/peer/quix_app.py"
READINGS = 300_000
IDLE = 10.0  # the peer stops after this long without a record
ROUNDS = 3
PIPELINE = "pipeline (whole job)"
PEER = "peer: Quix Streams (core job)"


def _median(found: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median readings/s (its own CPU figures with it)."""
    ranked = sorted(found, key=lambda r: r["records"] / r["seconds"])
    return ranked[len(ranked) // 2]


def _engine_meter(settings: StackSettings) -> CpuMeter:
    engine = Supervisor(StackPaths.from_settings(settings)).pid("opensearch")
    return CpuMeter({"engine": [engine] if engine else []})


def _children_cpu() -> float:
    """CPU seconds of this process's children reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _put(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 - loopback, from settings
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    urllib.request.urlopen(request, timeout=30).close()  # noqa: S310


def _peer_indices(settings: StackSettings, prefix: str) -> None:
    """The peer's indices, mapped as the pipeline maps its own (keywords, doubles, dates; the
    same refresh interval): neither side pays for a dynamic mapping."""
    common = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "5s"}
    readings = {
        "dynamic": False,
        "properties": {
            "event_id": {"type": "keyword"},
            "sensor_id": {"type": "keyword"},
            "station_id": {"type": "keyword"},
            "district": {"type": "keyword"},
            "metric": {"type": "keyword"},
            "unit": {"type": "keyword"},
            "value": {"type": "double"},
            "event_time": {"type": "date"},
            "seq": {"type": "long"},
            "battery_pct": {"type": "float"},
            "firmware": {"type": "keyword"},
        },
    }
    windows = {
        "dynamic": False,
        "properties": {
            "sensor_id": {"type": "keyword"},
            "resolution": {"type": "keyword"},
            "window_start": {"type": "date"},
            "window_end": {"type": "date"},
            "count": {"type": "long"},
            **{name: {"type": "double"} for name in ("sum", "min", "max", "mean")},
        },
    }
    for name, mapping in (("readings", readings), ("agg-1m", windows), ("agg-1h", windows)):
        _put(f"{settings.search_url}/{prefix}-{name}", {"settings": common, "mappings": mapping})


def run_peer(settings: StackSettings, processes: int) -> dict[str, float]:
    """The peer over the bench topic: wall seconds to its last record, records, documents,
    and CPU seconds of its processes and of the search node."""
    prefix = f"peer-{uuid.uuid4().hex[:8]}"
    _peer_indices(settings, prefix)
    engine = _engine_meter(settings)
    group = f"bench.peer.{prefix}"
    with tempfile.TemporaryDirectory(prefix="peer-state-") as state:
        command = [
            str(PEER_PYTHON),
            str(PEER_APP),
            "--brokers",
            settings.kafka_brokers,
            "--topic",
            settings.kafka_sensor_data_topic,
            "--group",
            group,
            "--search-url",
            settings.search_url,
            "--index-prefix",
            prefix,
            "--idle",
            str(IDLE),
            "--max-ahead-hours",
            str(settings.event_time_max_ahead_hours),
        ]
        first = engine.sample()
        before = _children_cpu()
        started = time.monotonic()
        members = [
            subprocess.Popen(
                [*command, "--state-dir", f"{state}/{n}"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for n in range(processes)
        ]
        outcomes: list[dict[str, Any]] = []
        try:
            for member in members:
                out, _ = member.communicate(timeout=3600)
                if member.returncode != 0 or not out.strip():
                    raise RuntimeError(f"the peer failed (exit {member.returncode})")
                outcomes.append(json.loads(out.strip().splitlines()[-1]))
            # the members are this process's children, reaped now: their CPU is counted
            spent = _children_cpu() - before
        finally:
            for member in members:
                if member.poll() is None:
                    os.killpg(member.pid, signal.SIGTERM)
        engine_seconds = engine.between(first, engine.sample())["engine"]
    store = make_store(settings)
    try:
        store.delete_indices(store.list_indices(f"{prefix}-*"))
    finally:
        store.close()
    return {
        "seconds": max(o["last_at"] for o in outcomes) - started,
        "records": sum(o["records"] for o in outcomes),
        "documents": sum(o["readings"] + o["windows"] for o in outcomes),
        "own_cpu": spent,
        "engine_cpu": engine_seconds,
    }


def run_pipeline(settings: StackSettings, ends: dict[int, int], processes: int) -> dict[str, float]:
    """The pipeline as the ETL runs it, on a Celery worker of its own."""
    engine = _engine_meter(settings)
    with bench_worker(settings, processes) as worker:
        meter = CpuMeter({"pipeline": [worker.pid]})
        mine, first = meter.sample(), engine.sample()
        started = time.monotonic()
        summary = run_as_etl(settings, ends, settings.etl_range_records)
        seconds = time.monotonic() - started
        own = meter.between(mine, meter.sample())["pipeline"]
        engine_seconds = engine.between(first, engine.sample())["engine"]
    return {
        "seconds": seconds,
        "records": summary.records,
        "documents": summary.indexed + summary.windows,
        "own_cpu": own,
        "engine_cpu": engine_seconds,
    }


def _bench() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=READINGS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    if not PEER_PYTHON.exists():
        print("peer: run scripts/peer-venv.sh first (make bench does)", file=sys.stderr)
        return 1
    settings, admin, topics = bench_pipeline(StackSettings())
    state = redis.Redis.from_url(settings.redis_url)
    processes = settings.worker_concurrency
    results: dict[str, dict[str, float]] = {}
    try:
        ends = _produce(settings, args.readings)
        count = sum(ends.values())
        print(f"peer bench: {count:,} records in 6 partitions, {processes} processes each")
        _wait_for_leader(settings, settings.dead_letter_topic)
        rounds: dict[str, list[dict[str, float]]] = {PIPELINE: [], PEER: []}
        for round_ in range(1, args.rounds + 1):
            # alternated, so that neither side always runs on a warmer (or busier) node
            order = (PIPELINE, PEER) if round_ % 2 else (PEER, PIPELINE)
            for side in order:
                if side == PIPELINE:
                    _reset(settings, state)
                    outcome = run_pipeline(settings, ends, processes)
                else:
                    outcome = run_peer(settings, processes)
                rounds[side].append(outcome)
                rate = outcome["records"] / outcome["seconds"]
                print(f"  round {round_}: {side}: {rate:,.0f} readings/s", flush=True)
        results = {side: _median(found) for side, found in rounds.items()}
    finally:
        _reset(settings, state)
        store = make_store(settings)
        store.delete_indices(store.list_indices(f"{settings.search_index_prefix}-*"))
        store.close()
        state.flushdb()
        for future in admin.delete_topics(topics).values():
            future.result(30)
    peer = results.get(PEER)
    print()
    header = f"{'what':<34} {'records':>9} {'readings/s':>11} {'x peer':>7}"
    print(f"{header} {'docs/rec':>9} {'own µs':>8} {'node µs':>8} {'total µs':>9}")
    for what, r in results.items():
        rate = r["records"] / r["seconds"]
        ratio = f"{rate / (peer['records'] / peer['seconds']):.2f}" if peer else "-"
        own = r["own_cpu"] / r["records"] * 1e6
        node = r["engine_cpu"] / r["records"] * 1e6
        docs = r["documents"] / r["records"]
        print(
            f"{what:<34} {int(r['records']):>9,} {rate:>11,.0f} {ratio:>7} "
            f"{docs:>9.2f} {own:>8.1f} {node:>8.1f} {own + node:>9.1f}"
        )
    print(
        f"(the round with the median readings/s of {args.rounds}, each side; the peer's time "
        f"ends at its last record, then it waits {IDLE:g} s idle to stop)"
    )
    return 0


def main() -> int:
    """The bench with the live simulator stopped (cpu_budget.simulator_stopped)."""
    supervisor = Supervisor(StackPaths.from_settings(StackSettings()))
    with simulator_stopped(supervisor):
        return _bench()


if __name__ == "__main__":
    sys.exit(main())
