"""A replay of the whole topic, in small chunks, while the live ETL goes on, reproduces every
document's flags (only provenance differs) and never touches the live cleaner checkpoint:
the next ETL run cleans from it, and its flags are those of one pass over each partition."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from celery import Celery

from iot_pipeline.cleaning import RawRecord, clean_batch
from iot_pipeline.orchestration.etl import commit_batch, plan_batch, process_batch
from iot_pipeline.processing.pipeline import cleaning_policy
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store
from iot_pipeline.vocabulary import CROSS_METRIC, DUPLICATE, SPATIAL

from support.clock import day, minute_stamp
from support.dag_runs import run_airflow
from support.ground_truth import document_id, snapshot
from support.hindsight import with_hindsight
from support.isolation import own_pipeline
from support.kafka_io import consume_all, coordinates
from support.workers import backfill, settings_env, start_worker, stop, wait_ready

CAP = 300  # records per range: several ranges and checkpoints per partition
FAULTS = ("spike=0.02", "duplicate=0.03", "out_of_order=0.02", "late=0.01", "stuck=0.05")
PROVENANCE = ("batch_id", "ingest_time")


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(
        test_settings, "replayflags", etl_max_records_per_partition=CAP, etl_range_records=CAP
    ) as own:
        yield own


def _etl_until_drained(settings: Settings, tag: str) -> None:
    """The ETL's own steps, run by run (a plan is capped at CAP records per partition)."""
    for n in range(20):
        plan = plan_batch(settings, f"{tag}-{n}")
        if not plan.ranges:
            return
        summary = process_batch(settings, plan)
        assert summary.failures == [], summary
        commit_batch(settings, summary)
    raise AssertionError("the ETL did not drain the topic in 20 runs")


def _offline_flags(settings: Settings) -> dict[str, list[str]]:
    """Flags of one pass of the cleaner over each partition, in order, from empty state."""
    messages = consume_all(settings, settings.kafka_sensor_data_topic, 10**9, idle_seconds=3)
    by_partition: dict[int, list[RawRecord]] = {}
    for m in sorted(messages, key=coordinates):
        partition, offset = coordinates(m)
        stamp = m.timestamp()[1] / 1000.0
        topic = settings.kafka_sensor_data_topic
        record = RawRecord(m.value() or b"", topic, partition, offset, m.key(), stamp)
        by_partition.setdefault(partition, []).append(record)
    policy = cleaning_policy(settings)
    flags: dict[str, list[str]] = {}
    for records in by_partition.values():
        result = clean_batch(records, {}, datetime.now(UTC), policy)
        firsts = [clean for clean in result.readings if DUPLICATE not in clean.flags]
        # with the flags later readings put on earlier ones, as the pipeline does
        for clean, found in zip(firsts, with_hindsight(firsts), strict=True):
            flags[document_id(clean.reading.sensor_id, clean.reading.event_id)] = found
    return flags


def _without(docs: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {i: {k: v for k, v in d.items() if k not in fields} for i, d in docs.items()}


def _live_checkpoints(settings: Settings) -> dict[str, bytes]:
    celery_app = redis.Redis.from_url(settings.redis_url)
    try:
        pattern = (
            f"{settings.search_index_prefix}:cleaner-state:{settings.kafka_sensor_data_topic}:*"
        )
        checkpoints: dict[str, bytes] = {}
        for key in celery_app.scan_iter(pattern):
            checkpoint = celery_app.get(key) or b""
            assert isinstance(checkpoint, bytes)  # the client does not decode
            checkpoints[key.decode()] = checkpoint
        return checkpoints
    finally:
        celery_app.close()


def test_a_whole_topic_replay_during_live_ingestion_reproduces_every_flag(
    settings: Settings, celery_app: Celery, airflow_env: dict[str, str]
) -> None:
    backfill(settings, minute_stamp(day(2)), 2400, seed=61, faults=FAULTS)
    env = {
        **settings_env(settings),
        **airflow_env,
        "ETL_MAX_RECORDS_PER_PARTITION": str(CAP),
        "ETL_RANGE_RECORDS": str(CAP),
    }
    store = make_store(settings)
    worker = start_worker(settings, "replay-flags")
    try:
        wait_ready(celery_app, "replay-flags")
        _etl_until_drained(settings, "first")
        before = snapshot(store, settings.search_index_prefix)
        live_before = _live_checkpoints(settings)
        # live ingestion goes on while the whole topic is replayed
        backfill(settings, minute_stamp(day(2, 3)), 1200, seed=62, faults=FAULTS)
        with ThreadPoolExecutor(1) as live:
            running = live.submit(_etl_until_drained, settings, "during")
            replay = run_airflow(env, "test", "iot_replay")
            running.result()
        live_after = _live_checkpoints(settings)
        # and the next live runs go on from the live checkpoint
        backfill(settings, minute_stamp(day(2, 5)), 1200, seed=63, faults=FAULTS)
        _etl_until_drained(settings, "after")
        after = snapshot(store, settings.search_index_prefix)
    finally:
        stop(worker)
        store.close()

    assert replay["state"] == "success", replay
    replayed = replay["tasks"]["process"]["xcom"]
    assert replayed["ranges"] > 6  # several chunks per partition, in order
    assert set(live_before) == set(live_after)
    assert live_after != live_before  # the live ETL moved on: its own writes only
    # the replay overwrote what it found with identical content (provenance aside)
    assert _without({i: after[i] for i in before}, PROVENANCE) == _without(before, PROVENANCE)
    # and every document, however it was written, carries the flags of one clean pass (but
    # for the rules that judge stored readings across partitions: cross-metric and buddy)
    truth = _offline_flags(settings)
    assert set(after) == set(truth)
    differing = {
        i: (d["flags"], truth[i])
        for i, d in after.items()
        if [f for f in d["flags"] if f not in (CROSS_METRIC, SPATIAL)] != truth[i]
    }
    assert differing == {}
    assert sum(1 for d in after.values() if d["flags"]) > 50  # the faults left their marks
