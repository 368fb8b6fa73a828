"""A hostile corpus between valid readings, in every partition, through the real pipeline
(`iot_sensor_etl` under `dag.test()`, a Celery worker, Kafka, the search node): every run
succeeds and commits every partition, every hostile record is dead-lettered exactly once with
a reason, every valid reading is indexed once, and the aggregates equal the ground truth."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from confluent_kafka import Producer

from iot_pipeline.contracts.positions import positions
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.clock import day, event_stamp, minute_stamp
from support.dag_runs import run_airflow
from support.ground_truth import assert_aggregates_match, expected_ids, snapshot
from support.isolation import own_pipeline
from support.kafka_io import as_produced, consume_all, headers_of, value_of
from support.readings import sample_reading
from support.workers import backfill, settings_env, start_worker, stop, wait_ready

PARTITIONS = 6
RANDOM_RECORDS = 10_200
TRUNCATED_SIZE = 1_047_000  # fits the source topic, not a dead letter with its headers
REASONS = {
    "malformed_json",
    "schema_invalid",
    "unit_mismatch",
    "time_out_of_range",
    "key_mismatch",
    "unprocessable",
}


def _reading(**change: object) -> dict[str, object]:
    hostile_sensor: dict[str, object] = {
        "event_id": "hostile-1",
        "sensor_id": "casa-hostile-01-temperature",
        "station_id": "casa-hostile-01",
        "event_time": event_stamp(day(4, 6)),
    }
    return sample_reading(**{**hostile_sensor, **change})


def _json(**change: object) -> bytes:
    return json.dumps(_reading(**change), ensure_ascii=False).encode()


def hostile_corpus(rng: random.Random) -> list[tuple[str, bytes, bytes | None]]:
    """(what it is, value, key): the records shown to break the pipeline, classic JSON edge
    cases, and random bytes."""
    valid = _json()
    key = b"casa-hostile-01-temperature"
    named: list[tuple[str, bytes, bytes | None]] = [
        ("arrays nested 1000 deep", b"[" * 1000 + b"]" * 1000, None),
        ("objects nested 1000 deep", b'{"a":' * 1000 + b"1" + b"}" * 1000, None),
        ("objects nested 100000 deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, None),
        ("value of 4301 digits", valid.replace(b"21.5", b"7" * 4301), key),
        ("seq of 5000 digits", valid.replace(b'"seq": 1', b'"seq": ' + b"9" * 5000), key),
        ("year 9999 at -02:00", _json(event_time="9999-12-31T23:00:00-02:00"), key),
        ("year 1 at +05:00", _json(event_time="0001-01-01T00:00:00+05:00"), key),
        ("year 9999 UTC", _json(event_time="9999-12-31T23:59:59.999Z"), key),
        ("the epoch", _json(event_time="1970-01-01T00:00:00Z"), key),
        ("a week ahead", _json(event_time="2027-01-31T00:00:00Z"), key),
        ("seq 2**64", _json(seq=2**64), key),
        ("seq 2**63", _json(seq=2**63), key),
        ("seq -1", _json(seq=-1), key),
        ("key of another sensor", _json(event_id="hostile-key"), b"casa-other-02-no2"),
        ("event id of 10k characters", _json(event_id="e" * 10_000), key),
        ("lone surrogate in the event id", valid.replace(b"hostile-1", b"\\ud800"), key),
        ("NUL in the sensor id", valid.replace(b"01-temperature", b"\\u0000"), key),
        ("value NaN", valid.replace(b"21.5", b"NaN"), key),
        ("value 1e400", valid.replace(b"21.5", b"1e400"), key),
        ("value as a string", valid.replace(b"21.5", b'"21.5"'), key),
        ("unit of another metric", _json(unit="µg/m³"), key),
        ("duplicate key, the second wrong", valid[:-1] + b', "value": "x"}', key),
        ("UTF-8 byte order mark", b"\xef\xbb\xbf" + valid, key),
        ("UTF-16", json.dumps(_reading()).encode("utf-16"), key),
        ("1 MB of garbage", rng.randbytes(1_000_000), None),
        ("1 MB beyond a dead letter's room", rng.randbytes(TRUNCATED_SIZE), None),
    ]
    classic = [
        b"",
        b"null",
        b"true",
        b"0",
        b"-0",
        b"1e400",
        b'"text"',
        b"[]",
        b"{}",
        b"NaN",
        b"-Infinity",
        b'{"a":1,}',
        b"{'a': 1}",
        b'{"a": 1} trailing',
        b"/* comment */ {}",
        b"\x00" * 16,
        b'{"schema_version": 1}',
        b'{"schema_version": 2}',
        b"[" + valid + b"]",
        valid[: len(valid) // 2],
    ]
    named += [(f"classic {raw[:20]!r}", raw, None) for raw in classic]
    noise = [
        (f"random {n}", rng.randbytes(rng.randint(0, 300)), rng.choice([None, rng.randbytes(8)]))
        for n in range(RANDOM_RECORDS)
    ]
    return named + noise


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "hostile", etl_task_timeout_seconds=600) as own:
        yield own


def _produce_hostile(
    settings: Settings, corpus: list[tuple[str, bytes, bytes | None]]
) -> dict[tuple[int, int], str]:
    """Each hostile record into partition i % 6; returns (partition, offset) -> what it is."""
    placed: dict[tuple[int, int], str] = {}
    failures: list[str] = []
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_brokers,
            "message.max.bytes": 4_000_000,
            "compression.type": "none",
            "enable.idempotence": True,
            "linger.ms": 20,
        }
    )
    for n, (label, value, key) in enumerate(corpus):

        def delivered(err: Any, msg: Any, label: str = label) -> None:
            if err is not None:
                failures.append(f"{label}: {err}")
            else:
                placed[(msg.partition(), msg.offset())] = label

        while True:
            try:
                producer.produce(
                    settings.kafka_sensor_data_topic,
                    value=value,
                    key=key,
                    partition=n % PARTITIONS,
                    on_delivery=delivered,
                )
                break
            except BufferError:
                producer.poll(0.5)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failures == []
    return placed


def test_hostile_records_are_dead_lettered_once_and_the_rest_flows(
    settings: Settings, celery_app: Celery, airflow_env: dict[str, str]
) -> None:
    rng = random.Random(20261128)
    corpus = hostile_corpus(rng)
    backfill(settings, minute_stamp(day(4)), 1200, seed=41)  # valid readings (and the
    hostile = _produce_hostile(settings, corpus)  # simulator's own faults) around it
    backfill(settings, minute_stamp(day(4, 8)), 1200, seed=42)
    assert len(hostile) == len(corpus) > 10_000

    env = {**settings_env(settings), **airflow_env}
    worker = start_worker(settings, "hostile")
    try:
        wait_ready(celery_app, "hostile")
        runs = [run_airflow(env, "test", "iot_sensor_etl") for _ in range(2)]
    finally:
        stop(worker)
    for run in runs:
        assert run["state"] == "success", run
    first = runs[0]["tasks"]["report"]["xcom"]
    assert first["failed_ranges"] == []
    assert first["partitions_committed"] == PARTITIONS
    assert first["lag_after"] == 0
    assert runs[1]["tasks"]["report"]["xcom"]["records_read"] == 0  # nothing left, nothing redone
    group = positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    assert all(p.committed == p.high for p in group)

    # every hostile record is a dead letter, exactly once, with a reason
    letters = consume_all(settings, settings.dead_letter_topic, 10**9, idle_seconds=5)
    by_source: Counter[tuple[int, int]] = Counter()
    reasons: dict[tuple[int, int], str] = {}
    truncated: dict[tuple[int, int], int] = {}
    for letter in letters:
        headers = {k: v.decode(errors="replace") for k, v in headers_of(letter).items()}
        source = (int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"]))
        by_source[source] += 1
        reasons[source] = headers["dlq.reason"]
        if "dlq.truncated" in headers:
            truncated[source] = int(headers["dlq.truncated"])
            assert len(value_of(letter)) < TRUNCATED_SIZE
    assert max(by_source.values()) == 1  # one letter per source record
    missing = [label for source, label in hostile.items() if source not in by_source]
    assert missing == []
    assert {reasons[s] for s in hostile} <= REASONS
    big = next(s for s, label in hostile.items() if label == "1 MB beyond a dead letter's room")
    assert truncated == {big: TRUNCATED_SIZE}
    whole = next(s for s, label in hostile.items() if label == "1 MB of garbage")
    assert whole in by_source
    assert reasons[next(s for s, lb in hostile.items() if lb == "key of another sensor")] == (
        "key_mismatch"
    )
    for label in ("year 9999 at -02:00", "year 1 at +05:00", "year 9999 UTC", "a week ahead"):
        assert reasons[next(s for s, lb in hostile.items() if lb == label)] == "time_out_of_range"

    # every valid reading is indexed once; nothing else is
    produced = consume_all(settings, settings.kafka_sensor_data_topic, 10**9, idle_seconds=5)
    valid = [(p, o, value) for p, o, value in as_produced(produced) if (p, o) not in hostile]
    store = make_store(settings)
    try:
        stored = snapshot(store, settings.search_index_prefix)
        assert set(stored) == expected_ids(valid)
        coordinates = {(d["kafka"]["partition"], d["kafka"]["offset"]) for d in stored.values()}
        assert len(coordinates) == len(stored)
        assert not coordinates & set(hostile)
        indices = store.list_indices(f"{settings.search_index_prefix}-readings-*")
        # the backfills' days only: no year-9999 index. The simulator's skewed clocks stamp a
        # reading up to 6 hours after the wall clock, so from 18:00 UTC on, tomorrow is one.
        recent = {day(n).strftime("%Y.%m.%d") for n in range(-1, 6)}
        assert all(index.rsplit("-", 1)[-1] in recent for index in indices), indices
        assert assert_aggregates_match(store, settings.search_index_prefix) > 100
    finally:
        store.close()
