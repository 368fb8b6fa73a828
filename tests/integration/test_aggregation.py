"""Window aggregates on the real stack: exact whatever the arrival order, duplicates, late
readings, replays and concurrent workers; late data is data; retention is respected."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from celery import Celery
from confluent_kafka import Consumer, Producer, TopicPartition

from iot_pipeline.aggregation import recompute_windows, touched_windows
from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.contracts.tasks import PROCESS_RANGE, SETTLE_RUN
from iot_pipeline.kafka_config import consumer_config, producer_config
from iot_pipeline.processing.pipeline import process_range
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.clock import day, event_stamp
from support.ground_truth import aggregates, assert_aggregates_match, snapshot
from support.isolation import own_pipeline
from support.kafka_io import consume_all, headers_of, produce_readings, value_of
from support.processing import process_pending
from support.readings import sample_reading
from support.workers import backfill, start_worker, stop, wait_ready

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Settings:
    """What the Celery client needs (the broker); each test runs its own pipeline."""
    return test_settings


@pytest.fixture
def own(test_settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    # a parametrized test's cases get topics of their own (a deleted topic lingers a while)
    case = "r" if "per-run" in request.node.name else ""
    with own_pipeline(test_settings, f"agg{request.node.name[5:12]}{case}") as pipeline:
        yield pipeline


def _ends(settings: Settings) -> dict[int, int]:
    consumer = Consumer(consumer_config(settings, "test.watermarks"))
    ends = {
        p: consumer.get_watermark_offsets(
            TopicPartition(settings.kafka_sensor_data_topic, p), timeout=10
        )[1]
        for p in range(6)
    }
    consumer.close()
    return ends


def _waves(
    settings: Settings,
    batch: str,
    starts: dict[int, int],
    ends: dict[int, int],
    size: int,
    replay: bool = False,
    per_run: bool = False,
) -> list[list[RangeTask]]:
    """Neighbouring ranges: wave k holds the k-th range of every partition (a partition's
    ranges run in order, as the orchestrator runs them; partitions run side by side).
    `per_run`: the ETL's ranges, which leave what spans partitions to the run's settle."""
    now = datetime.now(UTC)
    waves: list[list[RangeTask]] = []
    for p, end in ends.items():
        for k, first in enumerate(range(starts.get(p, 0), end, size)):
            while len(waves) <= k:
                waves.append([])
            offsets = OffsetRange(
                topic=settings.kafka_sensor_data_topic,
                partition=p,
                start=first,
                end=min(first + size, end),
            )
            waves[k].append(RangeTask.of(batch, now, offsets, replay=replay, per_run=per_run))
    return waves


def _run(celery_app: Celery, waves: list[list[RangeTask]]) -> list[dict[str, Any]]:
    """The waves' ranges on the workers, then (for per-run ranges) the run's settle, as the
    ETL's process step runs them."""
    reports = []
    for wave in waves:
        pending = [
            celery_app.send_task(PROCESS_RANGE, args=[t.model_dump(mode="json")]) for t in wave
        ]
        reports += [r.get(timeout=300) for r in pending]
    if any(task.per_run for wave in waves for task in wave):
        celery_app.send_task(SETTLE_RUN, args=[waves[0][0].batch_id]).get(timeout=300)
    return reports


def _well_formed(value: bytes) -> bool:
    try:
        doc = json.loads(value)
        datetime.fromisoformat(doc["event_time"])
        float(doc["value"])
    except (ValueError, TypeError, KeyError):
        return False
    return isinstance(doc, dict)


def _disorder(settings: Settings, messages: list[Any], rng: random.Random) -> None:
    """Duplicates of stored readings and late readings (new events minutes to hours in the
    past of their sensor), all in shuffled order."""
    extra: list[tuple[bytes, bytes]] = []
    for message in rng.sample(messages, 400):
        extra.append((message.key(), message.value()))
    # late copies of well-formed readings only: the backfill's hostile records (a number for
    # an event time, broken JSON) would break this helper, not the pipeline, and the order in
    # which `messages` came from the partitions decides which ones a sample picks
    usable = sorted((m for m in messages if _well_formed(m.value())), key=lambda m: m.value())
    for n, message in enumerate(rng.sample(usable, 300)):
        doc = json.loads(message.value())
        moment = datetime.fromisoformat(doc["event_time"]) - timedelta(
            seconds=rng.randrange(60, 3 * 3600)
        )
        doc["event_id"] = f"late-{n}"
        doc["event_time"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        doc["value"] = round(float(doc["value"]) * rng.uniform(0.97, 1.03), 2)
        extra.append((message.key(), json.dumps(doc).encode()))
    rng.shuffle(extra)
    producer = Producer(producer_config(settings))
    for key, value in extra:
        producer.produce(settings.kafka_sensor_data_topic, value, key)
    assert producer.flush(30) == 0


@pytest.mark.parametrize("per_run", [False, True], ids=["in-range", "per-run"])
def test_concurrent_workers_late_readings_duplicates_and_replays_give_exact_windows(
    own: Settings, celery_app: Celery, per_run: bool
) -> None:
    """Both ways to run ranges: each doing all its work, and the ETL's (what spans partitions
    settled once per run). Either way a replay of everything (which does all its work in
    its ranges) then changes nothing."""
    settings = own
    rng = random.Random(13)
    start = (TODAY - timedelta(days=1) + timedelta(hours=22)).strftime("%Y-%m-%dT%H:%MZ")
    backfill(settings, start, 6000, seed=21, interval=15)
    messages = consume_all(settings, settings.kafka_sensor_data_topic, 6000, idle_seconds=3)
    first = _ends(settings)
    _disorder(settings, messages, rng)
    ends = _ends(settings)
    workers = [start_worker(settings, name) for name in ("agg-a", "agg-b")]
    store = make_store(settings)
    try:
        for name in ("agg-a", "agg-b"):
            wait_ready(celery_app, name)
        _run(celery_app, _waves(settings, "batch-1", {}, first, 250, per_run=per_run))
        reports = _run(celery_app, _waves(settings, "batch-2", first, ends, 100, per_run=per_run))
        assert sum(r["records"] for r in reports) == 700
        prefix = settings.search_index_prefix
        compared = assert_aggregates_match(store, prefix)
        stored = snapshot(store, prefix)
        before = aggregates(store, prefix)
        # replay all of it (cleaner state warmed up as the replay path does, other range
        # boundaries): nothing changes, no revision moves
        _run(celery_app, _waves(settings, "replay-1", {}, ends, 400, replay=True))
        after = aggregates(store, prefix)
        replayed = snapshot(store, prefix)
    finally:
        for worker in workers:
            stop(worker)
        store.close()
    assert compared > 1000
    late = [d for d in stored.values() if d["event_id"].startswith("late-")]
    assert len(late) >= 290  # the few made from malformed records are dead letters
    assert sum(d["valid"] for d in late) > 150  # late is not invalid (some fail other rules)
    assert not any("too_late" in d["flags"] for d in stored.values())
    provenance = {"batch_id", "ingest_time"}  # which run wrote a reading, not what it is
    moved = {
        k: f
        for k, doc in stored.items()
        for f in doc
        if f not in provenance and doc[f] != replayed[k].get(f)
    }
    assert not moved
    changed = {k: (before[k], after[k]) for k in before if before[k] != after.get(k)}
    assert not changed, list(changed.items())[:2]


def test_a_backfill_of_a_past_day_for_live_sensors_is_valid_and_exact(
    own: Settings, celery_app: Celery
) -> None:
    """Live readings first (the sensors' clocks are now), then yesterday's history."""
    settings = own
    live_start = datetime.now(UTC) - timedelta(minutes=10)
    backfill(
        settings, live_start.strftime("%Y-%m-%dT%H:%MZ"), 2000, 5, interval=5, base_faults="none"
    )
    live = _ends(settings)
    yesterday = TODAY - timedelta(days=1)
    backfill(
        settings, yesterday.strftime("%Y-%m-%dT%H:%MZ"), 6000, 5, interval=600, base_faults="none"
    )
    ends = _ends(settings)
    worker = start_worker(settings, "agg-backfill")
    store = make_store(settings)
    try:
        wait_ready(celery_app, "agg-backfill")
        _run(celery_app, _waves(settings, "live", {}, live, 10**6))
        _run(celery_app, _waves(settings, "history", live, ends, 10**6))
        prefix = settings.search_index_prefix
        assert_aggregates_match(store, prefix)
        stored = snapshot(store, prefix)
        windows = aggregates(store, prefix)
    finally:
        stop(worker)
        store.close()
    day = yesterday.strftime("%Y-%m-%d")
    history = [d for d in stored.values() if d["event_time"].startswith(day)]
    assert len(history) > 5000
    assert all(d["valid"] and "too_late" not in d["flags"] for d in history)
    daily = [
        w for w in windows.values() if w["resolution"] == "1d" and w["window_start"].startswith(day)
    ]
    assert daily
    assert sum(w["count"] for w in daily if w["scope"] == "sensor") == len(history)


def test_a_reading_beyond_retention_is_dead_lettered_and_changes_no_window(
    own: Settings,
) -> None:
    """Readings and aggregates of a day kept before, then a late reading for it once the day
    has left the retention horizon: dead-lettered, and the day's windows stay as they were."""
    settings = own
    old_day = TODAY - timedelta(days=5)
    backfill(settings, old_day.strftime("%Y-%m-%dT%H:%MZ"), 300, 9, interval=60, base_faults="none")
    ends = _ends(settings)
    store = make_store(settings)
    state = redis.Redis.from_url(settings.redis_url)
    try:
        for wave in _waves(settings, "kept", {}, ends, 10**6):
            for task in wave:
                process_range(settings, store, state, task)
        before = aggregates(store, settings.search_index_prefix)
        message = consume_all(settings, settings.kafka_sensor_data_topic, 1, idle_seconds=3)[0]
        doc = {**json.loads(value_of(message)), "event_id": "too-old", "value": 1.0}
        producer = Producer(producer_config(settings))
        producer.produce(settings.kafka_sensor_data_topic, json.dumps(doc).encode(), message.key())
        assert producer.flush(30) == 0
        shorter = settings.model_copy(update={"retention_days": 3})
        reports = [
            process_range(shorter, store, state, task)
            for wave in _waves(settings, "late", ends, _ends(settings), 10**6)
            for task in wave
        ]
        after = aggregates(store, settings.search_index_prefix)
        letters = consume_all(settings, settings.dead_letter_topic, 1, idle_seconds=3)
    finally:
        state.close()
        store.close()
    assert [r.dead_letters for r in reports] == [1]
    assert headers_of(letters[0])["dlq.reason"] == b"beyond_retention"
    assert after == before


def _store_cleaned(store: Any, prefix: str, docs: list[dict[str, object]]) -> list[Any]:
    """These readings cleaned in one batch (a fresh cleaner state) and stored, searchable at
    once; the cleaned readings are returned."""
    from iot_pipeline.cleaning import RawRecord, clean_batch
    from iot_pipeline.contracts.readings import reading_actions
    from iot_pipeline.storage import index_all

    raws = [RawRecord(json.dumps(doc).encode(), "t", 0, n) for n, doc in enumerate(docs)]
    kept = clean_batch(raws, {}, datetime.now(UTC)).readings
    index_all(store, reading_actions(prefix, kept, "b", datetime.now(UTC)).actions, refresh=True)
    return kept


class _PausingStore:
    """The real store, except that the first aggregation search pauses after its answer:
    a writer that has read its inputs and not yet written."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.answered = threading.Event()
        self.resume = threading.Event()

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        result = self.store.search(index, body)
        if "aggs" in body and not self.answered.is_set():
            self.answered.set()
            assert self.resume.wait(60)
        return result  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_writer_holding_stale_inputs_never_overwrites_a_newer_window(own: Settings) -> None:
    """Writer A reads a window's readings, then stalls; meanwhile B adds readings and writes
    the window. A's write must lose (its version is stale), A must recompute, and the window
    ends with every reading and one revision per real change."""
    settings = own
    prefix = settings.search_index_prefix
    minute = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    store = make_store(settings)

    def index(first: int, count: int) -> list[Any]:
        from support.readings import sample_reading

        docs = [
            sample_reading(
                event_id=f"e{n}",
                value=20.0 + n,
                event_time=(minute + timedelta(seconds=n)).isoformat(),
            )
            for n in range(first, first + count)
        ]
        return _store_cleaned(store, prefix, docs)

    try:
        windows = touched_windows(index(0, 3))
        recompute_windows(store, prefix, windows, 5.0)
        stalled = _PausingStore(store)
        writer_a = threading.Thread(
            target=recompute_windows, args=(stalled, prefix, windows, 5.0), daemon=True
        )
        writer_a.start()
        assert stalled.answered.wait(60)  # A holds the inputs of three readings
        index(3, 2)
        recompute_windows(store, prefix, windows, 5.0)  # B writes five
        stalled.resume.set()
        writer_a.join(60)
        assert not writer_a.is_alive()
        stored = aggregates(store, prefix)
    finally:
        store.close()
    sensor = next(w for w in stored.values() if w["scope"] == "sensor" and w["resolution"] == "1m")
    assert sensor["count"] == 5
    assert sensor["revision"] == 2
    assert all(w["count"] == 5 and w["revision"] == 2 for w in stored.values())


def test_a_new_sensor_minute_from_the_readings_in_hand_equals_the_engines(
    own: Settings,
) -> None:
    """A range computes a sensor minute that has no document yet from its own readings; the
    engine, asked afterwards, finds exactly that window (nothing to rewrite). A minute that is
    stored already is never taken from the readings in hand: it is recomputed from the store,
    so it counts the readings it held before."""
    from iot_pipeline.aggregation.minutes import from_readings

    from support.readings import sample_reading

    settings = own
    prefix = settings.search_index_prefix
    minute = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    store = make_store(settings)
    values = [21.0, 23.5, 22.25, 80.0, 21.75]  # 80 °C: impossible, an invalid reading

    def index(first: int, count: int) -> list[Any]:
        docs = [
            sample_reading(
                event_id=f"m{n}",
                seq=n,
                value=values[n % len(values)],
                event_time=(minute + timedelta(seconds=5 * n)).isoformat(),
            )
            for n in range(first, first + count)
        ]
        return _store_cleaned(store, prefix, docs)

    try:
        first = index(0, 5)
        windows = touched_windows(first)
        sensor_minute = {w for w in windows if w.scope == "sensor"}
        held = recompute_windows(store, prefix, windows, 5.0, known=from_readings(first))
        assert held.from_memory == len(sensor_minute) == 1
        assert held.written == 6  # 1m, 1h and 1d, per sensor and per district
        engine = recompute_windows(store, prefix, windows, 5.0)
        assert (engine.from_memory, engine.written) == (0, 0)

        later = index(5, 3)  # the same minute, now stored: from the store, all eight
        again = recompute_windows(store, prefix, windows, 5.0, known=from_readings(later))
        assert again.from_memory == 0
        stored = aggregates(store, prefix)
    finally:
        store.close()
    sensor = next(w for w in stored.values() if w["scope"] == "sensor" and w["resolution"] == "1m")
    assert (sensor["readings"], sensor["invalid"], sensor["count"]) == (8, 1, 7)
    assert sensor["quality"] == {"impossible_value": 1}
    assert sensor["revision"] == 2
    assert sum(sensor["qc"].values()) == 8


def test_a_copy_of_a_stored_event_in_another_minute_and_partition_changes_no_window(
    own: Settings,
) -> None:
    """A hostile copy: the same sensor and event id, another minute and value, on another
    partition (whose cleaner never saw the event). The store keeps the first copy (409), so
    the copy's minute must not be taken from the range's readings: it has no window, and the
    first copy's window counts that copy once."""
    settings = own
    first_minute = TODAY - timedelta(hours=12)  # both copies in one daily index
    copy_minute = first_minute + timedelta(minutes=7)
    original = sample_reading(event_id="twice", value=20.0, event_time=event_stamp(first_minute))
    copy = sample_reading(event_id="twice", value=30.0, event_time=event_stamp(copy_minute))
    producer = Producer(producer_config(settings))
    for partition, doc in ((0, original), (1, copy)):
        producer.produce(
            settings.kafka_sensor_data_topic,
            json.dumps(doc).encode(),
            str(doc["sensor_id"]).encode(),
            partition=partition,
        )
    assert producer.flush(30) == 0
    store = make_store(settings)
    state = redis.Redis.from_url(settings.redis_url)
    try:
        reports = [
            process_range(settings, store, state, task)
            for wave in _waves(settings, "copy", {}, _ends(settings), 10**6)
            for task in wave
        ]
        stored = aggregates(store, settings.search_index_prefix)
    finally:
        state.close()
        store.close()
    assert sum(r.indexed for r in reports) == 1
    assert sum(r.duplicates for r in reports) == 1
    sensor_minutes = [
        w for w in stored.values() if (w["scope"], w["resolution"]) == ("sensor", "1m")
    ]
    assert [(w["window_start"], w["count"], w["sum"]) for w in sensor_minutes] == [
        (event_stamp(first_minute), 1, 20.0)
    ]


def test_a_buffered_upload_of_hundreds_of_separate_minutes_of_one_day_is_aggregated(
    own: Settings,
) -> None:
    """A station uploads a day of readings taken every other minute: 600 separate minutes
    of one daily index, each a time range the engine counts three times against its 1,024
    clauses per query; the windows still equal an offline computation."""
    settings = own
    start = day(1)
    readings = [
        sample_reading(
            event_id=f"gappy-{n}",
            sensor_id="casa-gappy-01-temperature",
            station_id="casa-gappy-01",
            district="Anfa",
            seq=n,
            value=round(18.0 + 0.01 * (n % 97), 2),
            event_time=event_stamp(start + timedelta(minutes=2 * n)),
        )
        for n in range(600)
    ]
    produce_readings(settings, readings)
    process_pending(settings, "gappy")
    store = make_store(settings)
    try:
        assert_aggregates_match(store, settings.search_index_prefix)
        windows = aggregates(store, settings.search_index_prefix)
    finally:
        store.close()
    minutes = [w for w in windows.values() if w["resolution"] == "1m" and w["scope"] == "sensor"]
    assert len(minutes) == 600
    assert sum(w["count"] for w in minutes) == 600


def _block_windows(settings: Settings, blocked: bool) -> None:
    """Make the engine refuse (or take again) writes to the pipeline's window indices."""
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the test stack's loopback node
        f"{settings.search_url}/{settings.search_index_prefix}-agg-*/_settings",
        data=json.dumps({"index.blocks.write": blocked}).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    urllib.request.urlopen(request, timeout=30).close()  # noqa: S310


def test_a_settle_the_engine_refuses_keeps_its_work_for_the_next_one(own: Settings) -> None:
    """The ETL's ranges leave the district windows to the run's settle. A settle that fails
    (writes to the windows refused) leaves that work pending; the next settle does it
    together with what came since, and every window is exact."""
    from iot_pipeline.errors import StoreError
    from iot_pipeline.processing import across_partitions

    settings = own
    prefix, interval = settings.search_index_prefix, settings.sensor_sample_interval_seconds
    start = (TODAY - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%MZ")
    backfill(settings, start, 1500, seed=8, interval=15, base_faults="none")
    first = _ends(settings)
    store = make_store(settings)
    state = redis.Redis.from_url(settings.redis_url)
    try:
        for wave in _waves(settings, "run-1", {}, first, 10**6, per_run=True):
            for task in wave:
                process_range(settings, store, state, task)
        waiting = across_partitions.pending(state, prefix)
        assert waiting > 50
        _block_windows(settings, True)
        try:
            with pytest.raises(StoreError):
                across_partitions.settle(state, store, prefix, interval)
        finally:
            _block_windows(settings, False)
        assert across_partitions.pending(state, prefix) == waiting  # kept, not lost
        # a later run's ranges add to it; one settle does both
        backfill(settings, start, 1500, seed=9, interval=15, base_faults="none")
        ends = _ends(settings)
        for wave in _waves(settings, "run-2", first, ends, 10**6, per_run=True):
            for task in wave:
                process_range(settings, store, state, task)
        settled = across_partitions.settle(state, store, prefix, interval, parallel=2)
        assert settled.district_windows >= waiting
        assert across_partitions.pending(state, prefix) == 0
        assert assert_aggregates_match(store, prefix) > 100
    finally:
        state.close()
        store.close()
