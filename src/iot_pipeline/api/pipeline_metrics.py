"""The ETL's health as Prometheus metrics, read at scrape time: run state from Redis, lag from
Kafka. A source that does not answer leaves its metrics out (`iot_pipeline_source_up` says
which) instead of failing the scrape."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import redis.asyncio
from fastapi.concurrency import run_in_threadpool
from prometheus_client import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from iot_pipeline.api.upstream import KafkaPositions, read_run_state
from iot_pipeline.contracts.run_state import RunState, partition_health
from iot_pipeline.errors import KafkaUnavailable, RedisUnavailable
from iot_pipeline.settings import Settings

log = logging.getLogger("iot_pipeline.api")
LAG_TIMEOUT_SECONDS = 2.0  # a scrape waits no longer for Kafka


def families(
    state: RunState | None, lags: dict[int, int] | None, stall_after: float, now: float
) -> list[Metric]:
    """The metrics of what could be read (None: the source did not answer)."""
    up = GaugeMetricFamily(
        "iot_pipeline_source_up",
        "Whether this scrape read the source (redis: run state, kafka: lag)",
        labels=["source"],
    )
    up.add_metric(["redis"], float(state is not None))
    up.add_metric(["kafka"], float(lags is not None))
    result: list[Metric] = [up]
    if lags is not None:
        lag = GaugeMetricFamily(
            "iot_pipeline_partition_lag",
            "Records of the sensor topic past the ETL's committed offset",
            labels=["partition"],
        )
        for partition, value in sorted(lags.items()):
            lag.add_metric([str(partition)], value)
        result.append(lag)
    if state is None:
        return result
    ranges = CounterMetricFamily(
        "iot_pipeline_quarantined_ranges_total", "Ranges quarantined after repeated failures"
    )
    ranges.add_metric([], state.quarantined_ranges)
    records = CounterMetricFamily(
        "iot_pipeline_quarantined_records_total", "Records of the quarantined ranges"
    )
    records.add_metric([], state.quarantined_records)
    failed = GaugeMetricFamily(
        "iot_pipeline_consecutive_failed_runs", "ETL runs in a row with a failed range"
    )
    failed.add_metric([], state.consecutive_failed_runs)
    age = GaugeMetricFamily(
        "iot_pipeline_partition_last_commit_age_seconds",
        "Seconds since the ETL last committed the partition (or first planned it)",
        labels=["partition"],
    )
    for partition, at in sorted(state.last_commit.items()):
        age.add_metric([str(partition)], max(0.0, now - at))
    refusing = GaugeMetricFamily(
        "iot_pipeline_store_refusing",
        "1 while the search engine refuses the last run's writes for a reason of its own "
        "(a write block, a privilege, a missing index): ranges held, nothing dead-lettered",
    )
    refusing.add_metric([], float(state.refusal is not None))
    lost = CounterMetricFamily(
        "iot_pipeline_lost_records",
        "Records Kafka's retention deleted before the ETL processed them",
    )
    lost.add_metric([], state.lost_records)
    remade = CounterMetricFamily(
        "iot_pipeline_topic_recreations",
        "Times the sensor topic was found deleted and created again (started clean)",
    )
    remade.add_metric([], state.topic_recreations)
    waiting = GaugeMetricFamily(
        "iot_pipeline_across_partitions_waiting",
        "District windows and buddy slots the ranges left for a settle, not settled yet",
    )
    waiting.add_metric([], state.across_waiting)
    settle = GaugeMetricFamily(
        "iot_pipeline_settle_failing_seconds",
        "Seconds since the runs' settles across partitions started failing (0: they succeed)",
    )
    failure = state.settle_failure
    settle.add_metric([], 0.0 if failure is None else max(0.0, now - failure.since))
    result += [ranges, records, failed, age, refusing, lost, remade, waiting, settle]
    if lags is not None:
        stalled = GaugeMetricFamily(
            "iot_pipeline_stalled", "1 when a partition has lag and no commit for the stall age"
        )
        health = partition_health(state, lags, stall_after, now)
        stalled.add_metric([], float(any(h.stalled for h in health)))
        result.append(stalled)
    return result


class _Fixed:
    """A collector of metrics already built."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def exposition(metrics: list[Metric]) -> bytes:
    """The metrics in the Prometheus text format."""
    return generate_latest(_Fixed(metrics))


class LagReader:
    """Kafka lag for scrapes: one read in flight at most, a short wait, None on failure."""

    def __init__(self, kafka: KafkaPositions, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self._pending: asyncio.Future[dict[int, int]] | None = None

    def _read(self) -> dict[int, int]:
        group = self.kafka.read(self.topic)
        return {p.partition: p.lag for p in group}

    async def read(self) -> dict[int, int] | None:
        if self._pending is not None and not self._pending.done():
            return None  # Kafka is slow: an earlier scrape's read still waits for it
        pending = asyncio.ensure_future(run_in_threadpool(self._read))
        # a read that outlives its scrape fails unobserved: retrieve its error here
        pending.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending = pending
        try:
            return await asyncio.wait_for(asyncio.shield(pending), LAG_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("metrics: Kafka lag not read within %.0fs", LAG_TIMEOUT_SECONDS)
        except KafkaUnavailable as exc:
            log.warning("metrics: Kafka unavailable: %s", exc)
        return None


async def scrape(client: redis.asyncio.Redis, lags: LagReader, settings: Settings) -> bytes:
    """The pipeline metrics of this moment."""
    try:
        state: RunState | None = await read_run_state(client, settings, recent=1)
    except RedisUnavailable as exc:
        log.warning("metrics: Redis unavailable: %s", exc)
        state = None
    return exposition(families(state, await lags.read(), settings.etl_stall_seconds, time.time()))
