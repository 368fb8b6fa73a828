"""Quality control scored on real sensor records nobody here wrote (datasets/real.json: BSRN
Payerne, a month of 1-minute temperature and humidity; SURFRAD Alamosa and NREL MIDC, a day
each; the last 40 days of three hourly national-network stations, TMY3 Greensboro and Sand
Point and IWEC Amsterdam), sent through Kafka and processed by the real pipeline.

Genuine measurements must survive cleaning: at most 0.1% of them may be invalidated and 1%
questioned, at most 0.5% of any one sensor's; the test prints each sensor's figures, how many
each rule flagged and every invalidated reading. Aggregation is
left out (`aggregate=False`): it never changes a verdict, and a month of 1-minute windows
would only make the test slower.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from iot_pipeline.contracts.ranges import RangeTask
from iot_pipeline.indices import readings_pattern
from iot_pipeline.orchestration.offsets import commit_ranges, plan_ranges
from iot_pipeline.processing.pipeline import process_range
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support import real_data
from support.isolation import own_pipeline
from support.kafka_io import consume_all, produce_readings

pytestmark = pytest.mark.skipif(
    not real_data.available(),
    reason=f"the real data sets are not in {real_data.dataset_path()}: run `make setup`",
)
MAX_INVALID = 0.001
MAX_QUESTIONED = 0.01
MAX_INVALID_PER_SENSOR = 0.005


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    # a month back: keep it all within the retention (the default is 30 days)
    with own_pipeline(
        test_settings, "realdata", retention_days=45, aggregate_retention_days_1m=45
    ) as own:
        yield own


@pytest.fixture(scope="module")
def replayed(settings: Settings) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    recent = (now - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M")
    readings = [r for r in real_data.readings(now) if str(r["event_time"]) >= recent]
    produce_readings(settings, readings)
    ranges = plan_ranges(
        settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group, 10**9, 20_000
    )
    store = make_store(settings)
    state = redis.Redis.from_url(settings.redis_url)
    try:
        for offsets in ranges:
            task = RangeTask.of("real-data", datetime.now(UTC), offsets)
            process_range(settings, store, state, task, aggregate=False)
        commit_ranges(settings, settings.etl_consumer_group, ranges)
        store.refresh(readings_pattern(settings.search_index_prefix))
    finally:
        store.close()
        state.close()
    return readings


def test_genuine_measurements_survive_cleaning(
    settings: Settings, replayed: list[dict[str, object]]
) -> None:
    store = make_store(settings)
    pattern = readings_pattern(settings.search_index_prefix)
    try:
        assert store.count(pattern) == len(replayed)  # every reading stored once
        flagged = store.search(
            pattern,
            {
                "size": 0,
                "aggs": {
                    "flags": {"terms": {"field": "flags", "size": 50}},
                    "questioned": {"filter": {"term": {"qc": "Q"}}},
                    "sensors": {
                        "terms": {"field": "sensor_id", "size": 100},
                        "aggs": {"invalid": {"filter": {"term": {"valid": False}}}},
                    },
                    "invalid": {
                        "filter": {"term": {"valid": False}},
                        "aggs": {"flags": {"terms": {"field": "flags", "size": 50}}},
                    },
                },
            },
        )["aggregations"]
        invalid = store.search(
            pattern,
            {
                "size": 1000,
                "query": {"term": {"valid": False}},
                "sort": [{"event_time": "asc"}],
                "_source": ["sensor_id", "event_time", "value", "flags"],
            },
        )["hits"]["hits"]
    finally:
        store.close()
    total = len(replayed)
    by_rule = {b["key"]: b["doc_count"] for b in flagged["flags"]["buckets"]}
    print(f"\nreal data: {total} readings of {len({r['sensor_id'] for r in replayed})} sensors")
    per_sensor = {
        b["key"]: (b["doc_count"], b["invalid"]["doc_count"]) for b in flagged["sensors"]["buckets"]
    }
    for sensor, (count, wrong) in sorted(per_sensor.items()):
        print(f"  {sensor:<30} {count:>7} readings {wrong:>5} invalidated ({wrong / count:.3%})")
    for rule, count in sorted(by_rule.items()):
        print(f"  {rule:<20} {count:>7} flagged ({count / total:.4%})")
    bad = flagged["invalid"]["doc_count"]
    print(f"  {'invalid':<20} {bad:>7} ({bad / total:.4%})")
    for hit in invalid:
        doc = hit["_source"]
        print(f"    {doc['sensor_id']} {doc['event_time']} {doc['value']} {doc['flags']}")
    assert not consume_all(settings, settings.dead_letter_topic, 10, idle_seconds=2)
    assert bad <= MAX_INVALID * total, Counter(
        {b["key"]: b["doc_count"] for b in flagged["invalid"]["flags"]["buckets"]}
    )
    assert flagged["questioned"]["doc_count"] <= MAX_QUESTIONED * total
    for sensor, (count, wrong) in per_sensor.items():
        assert wrong <= MAX_INVALID_PER_SENSOR * count, f"{sensor}: {wrong} of {count}"
