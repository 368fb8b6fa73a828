"""PM2.5 above PM10 at one station: the halves sit on different partitions (different
tasks), yet both end up flagged and out of the statistics, whatever the order and replays."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from confluent_kafka import Producer

from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.kafka_config import producer_config
from iot_pipeline.processing.pipeline import process_range
from iot_pipeline.schema import format_event_time
from iot_pipeline.settings import Settings
from iot_pipeline.storage import SearchStore, load_templates, make_store

from support.clock import day
from support.kafka_io import produce_readings
from support.partitioning import kafka_murmur2_partition
from support.processing import process_pending
from support.readings import pm_reading

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
# (minute, pm2.5, pm10): only the second minute breaks the rule.
PAIRS = [(0, 20.0, 45.0), (1, 80.0, 50.0), (2, 22.0, 47.0)]


@pytest.fixture
def settings(
    test_settings: Settings, make_topic: Callable[..., str], run_id: str
) -> Iterator[Settings]:
    own = test_settings.model_copy(
        update={
            "kafka_sensor_data_topic": make_topic(),
            "kafka_dlq_topic": make_topic(".dlq", partitions=1),
            "search_index_prefix": f"test-{run_id}-cross",
        }
    )
    store = make_store(own)
    store.ensure_templates(load_templates(own.search_templates_dir, own.search_index_prefix))
    yield own
    store.delete_indices(store.list_indices(f"{own.search_index_prefix}-*"))
    store.close()


def _station_on_two_partitions() -> str:
    for n in range(100):
        station = f"casa-xm-{n:02d}"
        a = kafka_murmur2_partition(f"{station}-pm25".encode(), 6)
        b = kafka_murmur2_partition(f"{station}-pm10".encode(), 6)
        if a != b:
            return station
    raise AssertionError("no station name splits its sensors")


def _reading(station: str, metric: str, minute: int, value: float) -> dict[str, object]:
    return {
        "schema_version": 1,
        "event_id": f"{station}-{metric}-{minute}",
        "sensor_id": f"{station}-{metric}",
        "station_id": station,
        "district": "Xm",
        "metric": metric,
        "value": value,
        "unit": "µg/m³",
        "event_time": format_event_time(T0 + timedelta(minutes=minute)),
        "seq": minute,
        "lat": 33.58,
        "lon": -7.6,
        "battery_pct": 90.0,
        "firmware": "3.0.2",
    }


def _produce(settings: Settings, station: str) -> dict[str, RangeTask]:
    producer = Producer(producer_config(settings))
    where: dict[str, tuple[int, int]] = {}

    def delivered(err: object, msg: Any) -> None:
        assert err is None, err
        sensor = msg.key().decode()
        first, _ = where.get(sensor, (msg.offset(), 0))
        where[sensor] = (min(first, msg.offset()), msg.partition())

    for minute, pm25, pm10 in PAIRS:
        for metric, value in (("pm25", pm25), ("pm10", pm10)):
            doc = _reading(station, metric, minute, value)
            producer.produce(
                settings.kafka_sensor_data_topic,
                key=str(doc["sensor_id"]).encode(),
                value=json.dumps(doc).encode(),
                on_delivery=delivered,
            )
    assert producer.flush(30) == 0
    tasks = {}
    for sensor, (start, partition) in where.items():
        metric = sensor.rsplit("-", 1)[1]
        tasks[metric] = RangeTask.of(
            f"batch-{metric}",
            T0 + timedelta(hours=1),
            OffsetRange(
                topic=settings.kafka_sensor_data_topic,
                partition=partition,
                start=start,
                end=start + len(PAIRS),
            ),
        )
    assert tasks["pm25"].range.partition != tasks["pm10"].range.partition
    return tasks


def _documents(store: SearchStore, prefix: str) -> dict[str, dict[str, Any]]:
    docs = {}
    for kind in ("readings-*", "agg-1m-*", "agg-1h-*"):
        store.refresh(f"{prefix}-{kind}")
        hits = store.search(f"{prefix}-{kind}", {"size": 1000})["hits"]["hits"]
        # readings by event id (the station's test events are unique), aggregates by id
        docs.update({h["_source"].get("event_id", h["_id"]): h["_source"] for h in hits})
    return docs


@pytest.mark.parametrize("order", [("pm25", "pm10"), ("pm10", "pm25")])
def test_pm25_above_pm10_is_flagged_on_both_and_kept_out_of_aggregates(
    settings: Settings, order: tuple[str, str]
) -> None:
    station = _station_on_two_partitions()
    tasks = _produce(settings, station)
    store = make_store(settings)
    state = redis.Redis.from_url(settings.redis_url)
    try:
        reports = [process_range(settings, store, state, tasks[m]) for m in order]
        # the second task is the one that can see both halves
        assert [r.cross_metric_changes for r in reports] == [0, 2]
        docs = _documents(store, settings.search_index_prefix)
        for minute, _, _ in PAIRS:
            for metric in ("pm25", "pm10"):
                doc = docs[f"{station}-{metric}-{minute}"]
                broken = minute == 1
                assert ("cross_metric" in doc["flags"]) is broken, doc
                assert doc["valid"] is not broken
        window = f"sensor:{station}-pm25:pm25:1m:2026-11-26T10:01:00Z"
        assert docs[window]["count"] == 0
        assert docs[window]["quality"] == {"cross_metric": 1}
        hour = docs[f"sensor:{station}-pm25:pm25:1h:2026-11-26T10:00:00Z"]
        assert (hour["count"], hour["sum"], hour["invalid"]) == (2, 42.0, 1)
        district = docs["district:Xm:pm10:1h:2026-11-26T10:00:00Z"]
        assert (district["count"], district["sum"]) == (2, 92.0)

        # A replay of either half re-indexes its documents without the flag first, and
        # restores it in the same task: the store ends identical.
        before = _documents(store, settings.search_index_prefix)
        for metric in order:
            process_range(settings, store, state, tasks[metric])
        assert _documents(store, settings.search_index_prefix) == before
    finally:
        for key in state.scan_iter(f"{settings.search_index_prefix}:*"):
            state.delete(key)
        store.delete_indices(store.list_indices(f"{settings.search_index_prefix}-*"))
        store.ensure_templates(
            load_templates(settings.search_templates_dir, settings.search_index_prefix)
        )
        store.close()


class _CountingStore:
    """The real store, counting the hits its searches for a station's readings return."""

    def __init__(self, store: SearchStore) -> None:
        self.store = store
        self.partner_hits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        found = self.store.search(index, body)
        if "station_id" in json.dumps(body.get("query", {})):
            self.partner_hits += len(found.get("hits", {}).get("hits", []))
        return found


def test_readings_days_apart_fetch_only_the_partners_of_their_own_slots(
    settings: Settings,
) -> None:
    """One PM2.5 reading days after the others (a skewed clock, a late upload) must not fetch
    every PM10 reading of the station in between."""
    station, start = "casa-xm-far", day(3, hour=10)

    coarse = [
        pm_reading(station, "pm10", 50.0, start + timedelta(seconds=10 * n), n) for n in range(300)
    ]
    produce_readings(settings, coarse)
    process_pending(settings, "far-1")
    produce_readings(
        settings,
        [
            pm_reading(station, "pm25", 20.0, start),
            pm_reading(station, "pm25", 20.0, start + timedelta(days=2), 1),
        ],
    )
    spy = _CountingStore(make_store(settings))
    try:
        process_pending(settings, "far-2", store=spy)
    finally:
        spy.store.close()
    assert spy.partner_hits == 1  # the PM10 reading in the first one's slot, none in between
