"""Property-based fuzzing of the OpenAPI document (schemathesis) against the real API
process and search node: no input gives a 5xx or a response outside the documented schema."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from iot_pipeline.contracts.ranges import RangeTask
from iot_pipeline.contracts.tasks import SETTLE_OVERRIDE
from iot_pipeline.indices import overrides_index
from iot_pipeline.orchestration.offsets import plan_ranges
from iot_pipeline.processing.pipeline import process_range
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.api_process import start_api, stop_api
from support.isolation import own_pipeline
from support.workers import backfill, drop_queued


@pytest.fixture(scope="module")
def fuzz_settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "fuzz") as own:
        start = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        backfill(own, start, 1960, seed=41)
        store = make_store(own)
        state = redis.Redis.from_url(own.redis_url)
        ranges = plan_ranges(own, own.kafka_sensor_data_topic, own.etl_consumer_group, 10**9)
        for offsets in ranges:
            process_range(own, store, state, RangeTask.of("fuzz", datetime.now(UTC), offsets))
        store.close()
        yield own


KEY = "fuzz-test-key"  # with a key, the write routes take the fuzzed bodies (not only 403)


@pytest.fixture(scope="module")
def api_url(fuzz_settings: Settings) -> Iterator[str]:
    process, url = start_api(fuzz_settings, API_KEY=KEY)
    try:
        yield url
    finally:
        stop_api(process)
        # no worker takes the overrides the fuzzer created: their messages are taken back
        drop_queued(fuzz_settings, SETTLE_OVERRIDE)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_no_input_gives_a_5xx_or_breaks_the_schema(api_url: str, fuzz_settings: Settings) -> None:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json", headers={"X-API-Key": KEY})
    tested = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # an operation the schema does not describe well
        operation = result.ok()
        if operation.path == "/stream/readings":
            continue  # never ends by design; it has its own test

        @given(case=operation.as_strategy())
        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            case.call_and_validate(checks=CHECKS, headers={"X-API-Key": KEY})

        fuzz()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) >= 8, tested
    # the write routes took some of the bodies (the key was sent), not only refused them
    store = make_store(fuzz_settings)
    try:
        pattern = f"{overrides_index(fuzz_settings.search_index_prefix)}*"
        store.refresh(pattern)
        created = store.search(pattern, {"size": 0, "track_total_hits": True})
    finally:
        store.close()
    assert created["hits"]["total"]["value"] > 0
