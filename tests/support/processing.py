"""The ETL's work done directly in the test process: everything not yet processed on the
test's own topic, processed (cleaned, indexed, aggregated) as the ETL's ranges do, the run's
work across partitions settled, and committed."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.orchestration.offsets import commit_ranges, plan_ranges
from iot_pipeline.processing import across_partitions
from iot_pipeline.processing.pipeline import process_range
from iot_pipeline.settings import Settings
from iot_pipeline.storage import SearchStore, make_store


def process_pending(
    settings: Settings, batch: str, store: SearchStore | None = None
) -> list[OffsetRange]:
    """Process and commit every record past the group's committed offsets (through `store`
    when given, which the caller closes); returns the ranges."""
    topic = settings.kafka_sensor_data_topic
    ranges = plan_ranges(settings, topic, settings.etl_consumer_group, 10**9)
    own = store is None
    store = store or make_store(settings)
    state = redis.Redis.from_url(settings.redis_url)
    try:
        now = datetime.now(UTC)
        for offsets in ranges:
            process_range(settings, store, state, RangeTask.of(batch, now, offsets, per_run=True))
        prefix, interval = settings.search_index_prefix, settings.sensor_sample_interval_seconds
        across_partitions.settle(state, store, prefix, interval)
        commit_ranges(settings, settings.etl_consumer_group, ranges)
    finally:
        if own:
            store.close()
        state.close()
    return ranges
