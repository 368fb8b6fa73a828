"""Property-based fuzzing of the OpenAPI document (schemathesis) against the real API
process and search node: no input gives a 5xx or a response outside the documented schema."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import schemathesis
from api_process import start_api, stop_api
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from workers import ROOT, settings_env

from iot_pipeline.orchestration.offsets import plan_ranges
from iot_pipeline.processing.pipeline import process_range
from iot_pipeline.processing.ranges import RangeTask
from iot_pipeline.settings import Settings
from iot_pipeline.storage import load_templates, make_store


@pytest.fixture(scope="module")
def fuzz_settings(test_settings: Settings) -> Iterator[Settings]:
    own = test_settings.model_copy(
        update={
            "kafka_sensor_data_topic": test_settings.kafka_sensor_data_topic + ".fuzz",
            "kafka_dlq_topic": test_settings.dead_letter_topic + ".fuzz",
            "search_index_prefix": test_settings.search_index_prefix + "-fuzz",
            "etl_consumer_group": f"{test_settings.search_index_prefix}.fuzz",
        }
    )
    admin = AdminClient({"bootstrap.servers": own.kafka_brokers})
    topics = [own.kafka_sensor_data_topic, own.dead_letter_topic]
    for future in admin.create_topics(
        [NewTopic(t, num_partitions=6 if i == 0 else 1) for i, t in enumerate(topics)]
    ).values():
        future.result(30)
    store = make_store(own)
    store.ensure_templates(load_templates(own.search_templates_dir, own.search_index_prefix))
    start = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    subprocess.run(
        [sys.executable, str(ROOT / "data_generator/producer.py"), "backfill", "--start", start,
         "--interval", "5", "--count", "1960", "--seed", "41", "--topic",
         own.kafka_sensor_data_topic, "--progress-every", "0"],
        check=True, capture_output=True, cwd=ROOT, timeout=120, env=settings_env(own),
    )  # fmt: skip
    state = redis.Redis.from_url(own.redis_url)
    for offsets in plan_ranges(own, own.kafka_sensor_data_topic, own.etl_consumer_group, 10**9):
        process_range(own, store, state, RangeTask.of("fuzz", datetime.now(UTC), offsets))
    yield own
    store.delete_indices(store.list_indices(f"{own.search_index_prefix}-*"))
    store.close()
    for key in state.scan_iter(f"{own.search_index_prefix}:*"):
        state.delete(key)
    for future in admin.delete_topics(topics).values():
        future.result(30)


@pytest.fixture(scope="module")
def api_url(fuzz_settings: Settings) -> Iterator[str]:
    process, url = start_api(fuzz_settings)
    try:
        yield url
    finally:
        stop_api(process)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_no_input_gives_a_5xx_or_breaks_the_schema(api_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/stream/readings":
            continue  # never ends by design; it has its own test

        @given(case=operation.as_strategy())
        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        fuzz()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) >= 8, tested
