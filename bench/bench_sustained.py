"""Benchmark: sustained end-to-end throughput through the real scheduled pipeline.

On the native stack (`make up`: Kafka, OpenSearch, Redis, the Celery worker and the Airflow
scheduler running `iot_sensor_etl` on its schedule), with the stack's own simulator stopped
so that the rate is ours:

1. baseline: a raw bulk load of the pipeline's own documents into the same node (no Kafka,
   no cleaning, no aggregates), readings/s, in this invocation;
2. search: the simulator live at rising rates (`--trial-minutes` each); a rate is sustained
   when the pipeline committed at least 90% of what was produced over the trial's second half
   and the lag at its end is bounded (at most 90 s of production). The highest sustained
   rate is reported;
3. sustained: the simulator at `--rate` (default 10,000/s) for `--minutes` (10): the lag
   every 10 s, the committed throughput, and freshness (event time to searchable) p50/p95;
4. drain: `iot_sensor_etl` paused, a 1,000,000-reading backfill of a past day that holds no
   readings yet produced, the DAG unpaused: seconds until every record is committed
   (processed, indexed and aggregated), and where the CPU went meanwhile: each service of the
   stack per reading (bench/cpu_budget.py), and the search node's busy time by activity.

The simulator is restarted at the end. `--phases` picks a subset (e.g. `drain`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_freshness import _new_batches, _percentile  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from cpu_budget import (  # noqa: E402
    CpuMeter,
    activity_rows,
    budget_rows,
    documents_rows,
    documents_written,
    engine_activity,
    simulator_stopped,
    stack_groups,
)

from iot_pipeline.indices import readings_index, readings_pattern  # noqa: E402
from iot_pipeline.kafka_config import consumer_config  # noqa: E402
from iot_pipeline.settings import StackSettings  # noqa: E402
from iot_pipeline.stack.airflow_services import admin_password  # noqa: E402
from iot_pipeline.stack.model import StackPaths  # noqa: E402
from iot_pipeline.stack.supervisor import Supervisor  # noqa: E402
from iot_pipeline.storage import make_store  # noqa: E402

DAG = "iot_sensor_etl"
RATES = (2_500, 5_000, 7_500, 10_000, 12_500, 15_000, 20_000, 25_000)
BACKLOG = 1_000_000


class Airflow:
    """The stack's Airflow REST API (token from the generated admin password)."""

    def __init__(self, settings: StackSettings) -> None:
        self.base = f"http://127.0.0.1:{settings.airflow_port}"
        password = admin_password(settings.stack_dir)
        if password is None:
            raise SystemExit("sustained: Airflow has not generated its admin password yet")
        answer = self._call("POST", "/auth/token", {"username": "admin", "password": password})
        self.token = answer["access_token"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(  # noqa: S310 - loopback, from settings
            self.base + path,
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            method=method,
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read() or b"null")

    def pause(self, paused: bool) -> None:
        self._call("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": paused})

    def trigger(self) -> None:
        """A run now, as an operator's "trigger" (or the DAG's own catch-up) starts one."""
        self._call("POST", f"/api/v2/dags/{DAG}/dagRuns", {"logical_date": None})

    def runs(self, since: datetime) -> list[dict[str, Any]]:
        stamp = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        answer = self._call("GET", f"/api/v2/dags/{DAG}/dagRuns?limit=100&run_after_gte={stamp}")
        return list(answer["dag_runs"])


class Offsets:
    """High watermarks and the ETL group's committed offsets of the data topic."""

    def __init__(self, settings: StackSettings) -> None:
        self.topic = settings.kafka_sensor_data_topic
        self.consumer = Consumer(consumer_config(settings, settings.etl_consumer_group))
        meta = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        self.partitions = sorted(meta.partitions)

    def totals(self) -> tuple[int, int]:
        """(records produced, records committed), summed over partitions."""
        parts = [TopicPartition(self.topic, p) for p in self.partitions]
        committed = self.consumer.committed(parts, timeout=10)
        marks = [self.consumer.get_watermark_offsets(tp, timeout=10) for tp in parts]
        high = sum(h for _, h in marks)
        # a partition with nothing committed yet is at its log start
        done = sum(
            c.offset if c.offset >= 0 else low for c, (low, _) in zip(committed, marks, strict=True)
        )
        return high, done

    def lag(self) -> int:
        high, done = self.totals()
        return high - done

    def close(self) -> None:
        self.consumer.close()


def produce_live(settings: StackSettings, rate: float, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "data_generator/producer.py"),
            "live",
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--progress-every",
            "0",
            "--seed",
            str(int(time.time())),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_drained(offsets: Offsets, timeout: float) -> float | None:
    """Seconds until the lag is 0, or None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if offsets.lag() == 0:
            return time.monotonic() - started
        time.sleep(1)
    return None


def trial(
    settings: StackSettings, offsets: Offsets, rate: float, seconds: float, store: Any = None
) -> dict[str, Any]:
    """Produce at `rate` for `seconds`; sample the lag every 10 s (and freshness)."""
    start_high, start_done = offsets.totals()
    start_ms = int(time.time() * 1000)
    producer = produce_live(settings, rate, seconds)
    samples: list[tuple[float, int, int]] = []
    seen: set[str] = set()
    if store is not None:
        seen = set(_new_batches(store, settings, start_ms - 600_000, start_ms + 10**9, set()))
    ages: list[float] = []
    began = time.monotonic()
    next_sample = began
    while producer.poll() is None:
        now = time.monotonic()
        if now >= next_sample:
            high, done = offsets.totals()
            samples.append((now - began, high - start_high, done - start_done))
            print(
                f"    t={now - began:5.0f}s produced {high - start_high:>10,} "
                f"committed {done - start_done:>10,} lag {high - done:>9,}",
                flush=True,
            )
            next_sample += 10
        if store is not None:
            polled = time.time()
            until = start_ms + int(seconds * 1000)
            for batch, buckets in _new_batches(store, settings, start_ms, until, seen).items():
                seen.add(batch)
                for bucket in buckets:
                    ages += [polled - bucket["key"] / 1000 - 0.5] * int(bucket["doc_count"])
        time.sleep(1)
    high, done = offsets.totals()
    samples.append((time.monotonic() - began, high - start_high, done - start_done))
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    produced_rate = (half[-1][1] - half[0][1]) / max(1e-9, half[-1][0] - half[0][0])
    committed_rate = (half[-1][2] - half[0][2]) / max(1e-9, half[-1][0] - half[0][0])
    end_lag = high - done
    sustained = committed_rate >= 0.9 * produced_rate and end_lag <= produced_rate * 90
    drained = wait_drained(offsets, 600)
    return {
        "rate": rate,
        "produced_rate": produced_rate,
        "committed_rate": committed_rate,
        "end_lag": end_lag,
        "max_lag": max(s[1] - s[2] for s in samples),
        "sustained": sustained,
        "drain_after": drained,
        "freshness": (statistics.median(ages), _percentile(ages, 0.95)) if ages else None,
    }


def backlog_start(settings: StackSettings) -> datetime:
    """Where the backlog's event times begin: 01:00 of the most recent past day that holds no
    reading yet (a station's or an import's history), within the kept days. A drain into
    hours that earlier runs filled already would judge and aggregate each reading among
    several times the readings a sensor really sends, and slow down from run to run."""
    store = make_store(settings)
    try:
        taken = set(store.list_indices(readings_pattern(settings.search_index_prefix)))
    finally:
        store.close()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for days in range(2, max(3, settings.recompute_horizon_days - 2)):
        day = today - timedelta(days=days)
        if readings_index(settings.search_index_prefix, day) not in taken:
            return day + timedelta(hours=1)
    print("  drain: every kept day holds readings already; backfilling 8 hours ago", flush=True)
    return datetime.now(UTC) - timedelta(hours=8)


def drain(
    settings: StackSettings, airflow: Airflow, offsets: Offsets, count: int, meter: CpuMeter
) -> tuple[float | None, dict[str, float], list[str]]:
    """Seconds from unpausing the DAG over a `count`-record backlog to lag 0, the CPU
    seconds each group of the stack spent meanwhile, and the search node's busy time."""
    if wait_drained(offsets, 300) is None:
        raise SystemExit("drain: the pipeline did not catch up before the backlog")
    airflow.pause(True)
    try:
        from bench_processing import backfill

        start = backlog_start(settings)
        backfill(settings.kafka_sensor_data_topic, start, count, uuid.uuid4().int % 10**6)
        print(
            f"  drain: backlog of {offsets.lag():,} records from {start:%Y-%m-%d %H:%M}", flush=True
        )
        # Let a scheduled run that was already going finish (it saw none of the backlog).
        time.sleep(5)
    finally:
        first = meter.sample()
        busy = engine_activity(settings.search_url)
        docs = documents_written(settings.search_url, settings.search_index_prefix)
        airflow.pause(False)
        # at once, not at the next tick of the schedule (up to a minute of waiting that
        # belongs to the bench's pause, not to the pipeline)
        airflow.trigger()
    seconds = wait_drained(offsets, 1800)
    spent = meter.between(first, meter.sample())
    written = documents_written(settings.search_url, settings.search_index_prefix)
    activity = activity_rows(busy, engine_activity(settings.search_url), count)
    return (
        seconds,
        spent,
        [*activity, "", *documents_rows(docs, written, count, "documents written")],
    )


def baseline(settings: StackSettings) -> float:
    """Raw bulk readings/s of the pipeline's own documents (bench_processing's method)."""
    import bench_processing as processing
    import redis

    own, admin, topics = processing.bench_pipeline(settings)
    state = redis.Redis.from_url(own.redis_url)
    try:
        ends = processing._produce(own, 100_000)
        rates = []
        for _ in range(3):
            processing._reset(own, state)
            seconds, docs = processing.raw_bulk_load(own, ends)
            rates.append(docs / seconds)
        return statistics.median(rates)
    finally:
        processing._reset(own, state)
        store = make_store(own)
        store.delete_indices(store.list_indices(f"{own.search_index_prefix}-*"))
        store.close()
        for future in admin.delete_topics(topics).values():
            future.result(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phases", default="baseline,search,sustained,drain")
    parser.add_argument("--rate", type=float, default=10_000.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--trial-minutes", type=float, default=2.0)
    parser.add_argument("--backlog", type=int, default=BACKLOG)
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    settings = StackSettings()
    supervisor = Supervisor(StackPaths.from_settings(settings))
    needed = ("airflow-scheduler", "worker")
    if any(supervisor.state(n) != "RUNNING" for n in needed):
        print("sustained: needs the native stack running (make up)", file=sys.stderr)
        return 1
    airflow = Airflow(settings)
    offsets = Offsets(settings)
    store = make_store(settings)
    rows: list[tuple[str, str, str]] = []
    raw = None
    budget: list[str] = []
    try:
        if "baseline" in phases:
            raw = baseline(settings)
            print(f"  raw bulk load: {raw:,.0f} readings/s", flush=True)
            rows.append(("raw bulk load of the same documents (baseline)", f"{raw:,.0f}/s", "1.00"))
        with simulator_stopped(supervisor):
            best = None
            if "search" in phases:
                for rate in RATES:
                    print(f"  trial at {rate:,}/s for {args.trial_minutes:g} min", flush=True)
                    result = trial(settings, offsets, rate, args.trial_minutes * 60)
                    verdict = "sustained" if result["sustained"] else "not sustained"
                    print(
                        f"  -> committed {result['committed_rate']:,.0f}/s of "
                        f"{result['produced_rate']:,.0f}/s, end lag {result['end_lag']:,}: "
                        f"{verdict}",
                        flush=True,
                    )
                    if not result["sustained"]:
                        break
                    best = result
                rows.append(
                    (
                        "highest sustained rate (bounded lag)",
                        f"{best['produced_rate']:,.0f}/s" if best else "below the first trial",
                        f"{best['produced_rate'] / raw:.2f}" if best and raw else "-",
                    )
                )
            if "sustained" in phases:
                print(f"  sustained at {args.rate:,.0f}/s for {args.minutes:g} min", flush=True)
                result = trial(settings, offsets, args.rate, args.minutes * 60, store)
                ratio = f"{result['committed_rate'] / raw:.2f}" if raw else "-"
                rows.append(
                    (
                        f"committed at {args.rate:,.0f}/s for {args.minutes:g} min",
                        f"{result['committed_rate']:,.0f}/s",
                        ratio,
                    )
                )
                rows.append(
                    ("  lag at the end / max", f"{result['end_lag']:,} / {result['max_lag']:,}", "")
                )
                if result["freshness"]:
                    p50, p95 = result["freshness"]
                    rows.append(("  freshness p50 / p95", f"{p50:.1f} s / {p95:.1f} s", ""))
                drained = result["drain_after"]
                rows.append(
                    (
                        "  drained after production stopped",
                        f"{drained:.0f} s" if drained else "no",
                        "",
                    )
                )
            if "drain" in phases:
                print(f"  drain of a {args.backlog:,}-reading backlog", flush=True)
                meter = CpuMeter(stack_groups(supervisor))
                seconds, spent, activity = drain(settings, airflow, offsets, args.backlog, meter)
                budget = budget_rows(spent, args.backlog, args.rate) + activity
                rows.append(
                    (
                        f"drain {args.backlog:,} readings (goal <= 120 s)",
                        f"{seconds:.0f} s" if seconds else "not in 30 min",
                        f"{args.backlog / seconds / raw:.2f}" if seconds and raw else "-",
                    )
                )
                if seconds:
                    rows.append(
                        ("  = readings/s end to end", f"{args.backlog / seconds:,.0f}/s", "")
                    )
    finally:
        offsets.close()
        store.close()
    print()
    print(f"{'what':<52} {'value':>20} {'x raw':>7}")
    for what, value, ratio in rows:
        print(f"{what:<52} {value:>20} {ratio:>7}")
    if budget:
        print()
        print(f"during the drain of {args.backlog:,} readings:")
        print("\n".join(budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
