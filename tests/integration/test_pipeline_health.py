"""Pipeline stalls as the API (`/pipeline/status`, `/health/pipeline`, `/metrics`) and
`make status` report them: run state written to the real Redis with run_state's own functions,
lag produced to the test's own topic, the API a real process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
import redis
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from iot_pipeline.aggregation.windows import Window
from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.contracts.run_state import (
    Quarantine,
    note_committed,
    note_planned,
    note_quarantined,
    note_range_failed,
    note_run,
    note_settle,
)
from iot_pipeline.kafka_config import producer_config
from iot_pipeline.processing import across_partitions
from iot_pipeline.settings import Settings

from support.api_process import free_port, start_api, stop_api
from support.isolation import own_pipeline
from support.tcp_proxy import TcpProxy
from support.waiting import eventually
from support.workers import ROOT, settings_env

STALL = 10  # seconds (ETL_STALL_SECONDS); commits "older" than it are written with a past `at`
KEY = "k3y-for-pipeline-health"
LAGS = {0: 5, 1: 3}  # records produced per partition and never committed


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "health", etl_stall_seconds=STALL) as own:
        producer = Producer(producer_config(own))
        for partition, count in LAGS.items():
            for i in range(count):
                producer.produce(
                    own.kafka_sensor_data_topic, b"{}", key=str(i), partition=partition
                )
        assert producer.flush(30) == 0
        yield own


@pytest.fixture
def state(settings: Settings) -> Iterator[redis.Redis]:
    """The run state's Redis, emptied of this pipeline's state before and after the test."""
    client = redis.Redis.from_url(settings.redis_url)

    def clear() -> None:
        for pattern in ("pipeline", "pending"):
            for key in client.scan_iter(f"{settings.search_index_prefix}:{pattern}:*"):
                client.delete(key)

    clear()
    yield client
    clear()
    client.close()


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[httpx.Client]:
    process, url = start_api(settings, ETL_STALL_SECONDS=str(STALL), API_KEY=KEY)
    with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": KEY}) as client:
        yield client
    stop_api(process)


def _range(settings: Settings, partition: int, start: int = 0, end: int = 0) -> OffsetRange:
    return OffsetRange(
        topic=settings.kafka_sensor_data_topic, partition=partition, start=start, end=end
    )


def _stall(settings: Settings, client: redis.Redis, now: float) -> None:
    """Partition 1 (lag 3) last committed a minute ago; partition 2 too, but it has no lag."""
    prefix = settings.search_index_prefix
    note_planned(client, prefix, [_range(settings, p) for p in (0, 1, 2)], at=now)
    note_committed(client, prefix, [_range(settings, 1), _range(settings, 2)], at=now - 60)
    failing = _range(settings, 1, 0, 3)
    note_range_failed(client, prefix, failing, "ConnectionError: search store", at=now - 50)
    note_range_failed(client, prefix, failing, "TimeoutError: worker lost", at=now - 40)
    entry = Quarantine(
        range=str(_range(settings, 4, 7, 9)),
        topic=settings.kafka_sensor_data_topic,
        partition=4,
        start=7,
        end=9,
        records=2,
        attempts=3,
        error="ValueError: poisoned batch\nTraceback ...",
        batch_id="health-batch-1",
        at=now - 30,
    )
    note_quarantined(client, prefix, entry)
    note_run(client, prefix, clean=False)
    note_run(client, prefix, clean=False)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _problem(response: httpx.Response, title: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["title"] == title
    assert response.headers["retry-after"] == "5"


def test_a_fresh_pipeline_is_healthy(api: httpx.Client, state: redis.Redis) -> None:
    health = api.get("/health/pipeline", headers={"X-API-Key": ""})  # open without the key
    assert health.status_code == 200, health.text
    assert health.json() | {"detail": ""} == {
        "status": "ok",
        "detail": "",
        "stall_after_seconds": STALL,
        "stalled_partitions": [],
        "total_lag": sum(LAGS.values()),
        "consecutive_failed_runs": 0,
        "store_refusal": None,
        "across_partitions_waiting": 0,
        "settle_failing": None,
    }
    assert api.get("/pipeline/status", headers={"X-API-Key": ""}).status_code == 401
    status = api.get("/pipeline/status").json()
    assert status["stalled"] is False
    assert {p["partition"]: p["lag"] for p in status["partitions"] if p["lag"]} == LAGS
    assert {p["last_commit_age_seconds"] for p in status["partitions"]} == {None}
    assert status["failing_ranges"] == status["quarantines"] == []
    assert status["quarantined_ranges"] == status["quarantined_records"] == 0


def test_stall_shows_in_status_health_and_metrics_then_clears(
    api: httpx.Client, settings: Settings, state: redis.Redis
) -> None:
    now = time.time()
    _stall(settings, state, now)

    health = api.get("/health/pipeline")
    assert health.status_code == 503, health.text
    assert health.headers["content-type"].startswith("application/json")
    body = health.json()
    assert body["status"] == "stalled"
    assert body["total_lag"] == 8
    assert body["consecutive_failed_runs"] == 2
    [stalled] = body["stalled_partitions"]
    assert stalled["partition"] == 1
    assert stalled["lag"] == 3
    assert 60 <= stalled["last_commit_age_seconds"] < 90

    status = api.get("/pipeline/status").json()
    partitions = {p["partition"]: p for p in status["partitions"]}
    assert status["stalled"] is True
    assert status["stall_after_seconds"] == STALL
    assert [p for p, v in partitions.items() if v["stalled"]] == [1]
    assert partitions[0]["last_commit_age_seconds"] < STALL  # lag, but young
    assert partitions[2]["last_commit_age_seconds"] >= 60  # old, but no lag
    assert partitions[3]["last_commit_age_seconds"] is None
    assert status["consecutive_failed_runs"] == 2
    assert status["quarantined_ranges"] == 1
    assert status["quarantined_records"] == 2
    [failing] = status["failing_ranges"]
    assert failing["range"] == f"{settings.kafka_sensor_data_topic}:1:0"
    assert failing["attempts"] == 2
    assert failing["error"] == "TimeoutError: worker lost"
    assert abs(datetime.fromisoformat(failing["since"]).timestamp() - (now - 50)) < 0.01
    [quarantine] = status["quarantines"]
    assert quarantine["range"] == str(_range(settings, 4, 7, 9))
    assert (quarantine["records"], quarantine["attempts"]) == (2, 3)
    assert quarantine["batch_id"] == "health-batch-1"
    assert quarantine["error"].startswith("ValueError: poisoned batch")
    assert abs(datetime.fromisoformat(quarantine["at"]).timestamp() - (now - 30)) < 0.01

    metrics = _samples(api.get("/metrics").text)
    assert metrics[("iot_pipeline_stalled", ())] == 1
    assert metrics[("iot_pipeline_quarantined_ranges_total", ())] == 1
    assert metrics[("iot_pipeline_quarantined_records_total", ())] == 2
    assert metrics[("iot_pipeline_consecutive_failed_runs", ())] == 2
    assert metrics[("iot_pipeline_partition_lag", (("partition", "0"),))] == 5
    assert metrics[("iot_pipeline_partition_lag", (("partition", "3"),))] == 0
    assert metrics[("iot_pipeline_partition_last_commit_age_seconds", (("partition", "1"),))] >= 60
    assert ("iot_pipeline_partition_last_commit_age_seconds", (("partition", "3"),)) not in metrics
    assert metrics[("iot_pipeline_source_up", (("source", "kafka"),))] == 1
    assert metrics[("iot_pipeline_source_up", (("source", "redis"),))] == 1

    # the ETL commits partition 1 again: healthy, the range's failures are over
    note_committed(state, settings.search_index_prefix, [_range(settings, 1, 0, 3)], at=time.time())
    assert api.get("/health/pipeline").json()["status"] == "ok"
    status = api.get("/pipeline/status").json()
    assert status["stalled"] is False
    assert status["failing_ranges"] == []
    assert status["consecutive_failed_runs"] == 2  # until a clean run says otherwise
    assert _samples(api.get("/metrics").text)[("iot_pipeline_stalled", ())] == 0


def test_settles_that_keep_failing_are_a_stall_with_their_waiting_work(
    api: httpx.Client, settings: Settings, state: redis.Redis
) -> None:
    """The settle across partitions failing run after run: the readings are committed, so no
    partition stalls, but district windows and buddy verdicts fall behind. Past the stall
    age the health says so, with what waits and why; one settle that gets through ends it."""
    prefix = settings.search_index_prefix
    window = Window("district", "Anfa", "no2", "1m", 1_800_000_000)
    across_partitions.defer(state, prefix, [window], {"no2": {3_000_000}})
    note_settle(state, prefix, "StoreRefused: index [x] blocked", time.time() - 2 * STALL)
    note_settle(state, prefix, "StoreRefused: index [y] blocked", time.time())
    health = api.get("/health/pipeline")
    assert health.status_code == 503, health.text
    body = health.json()
    assert body["status"] == "stalled"
    assert body["stalled_partitions"] == []
    assert body["across_partitions_waiting"] == 2
    assert body["detail"].startswith("the settle across partitions (district windows, buddy")
    assert body["detail"].endswith("2 item(s) waiting: StoreRefused: index [y] blocked")
    failing = body["settle_failing"]
    assert failing["error"] == "StoreRefused: index [y] blocked"
    since = datetime.fromisoformat(failing["since"]).timestamp()
    assert time.time() - since >= 2 * STALL  # the episode's first failure
    status = api.get("/pipeline/status").json()
    assert status["settle_failing"] == failing
    assert status["across_partitions_waiting"] == 2
    metrics = _samples(api.get("/metrics").text)
    assert metrics[("iot_pipeline_settle_failing_seconds", ())] >= 2 * STALL
    assert metrics[("iot_pipeline_across_partitions_waiting", ())] == 2

    note_settle(state, prefix, None, time.time())  # a settle got through
    health = api.get("/health/pipeline")
    assert health.status_code == 200, health.text
    assert health.json()["settle_failing"] is None


def test_make_status_prints_the_pipeline_section_and_exits_3_when_stalled(
    settings: Settings, state: redis.Redis
) -> None:
    _stall(settings, state, time.time())
    done = subprocess.run(
        [sys.executable, "-m", "iot_pipeline.stack", "status"],
        cwd=ROOT,
        env=settings_env(settings, ETL_STALL_SECONDS=str(STALL)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    section = done.stdout[done.stdout.index("\npipeline ") :].splitlines()
    assert f"{settings.kafka_sensor_data_topic} (group {settings.etl_consumer_group})" in section[1]
    assert "total lag 8" in section[1]
    assert section[1].endswith("STALLED")
    rows = {line.split()[0]: line for line in section[3:9]}
    assert rows["1"].split()[1] == "3"
    assert rows["1"].endswith("STALLED")
    assert "STALLED" not in rows["0"] + rows["2"]
    assert rows["3"].split()[1:] == ["0", "never"]
    assert (
        "failed runs in a row 2, failing ranges 1, quarantined 1 ranges (2 records)" in done.stdout
    )
    assert f"{_range(settings, 4, 7, 9)}  ValueError: poisoned batch\n" in done.stdout


def test_kafka_down_is_its_own_503_and_metrics_still_answer(
    settings: Settings, state: redis.Redis
) -> None:
    _stall(settings, state, time.time())
    process, url = start_api(
        settings, ETL_STALL_SECONDS=str(STALL), KAFKA_BROKERS=f"127.0.0.1:{free_port()}"
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            _problem(client.get("/pipeline/status"), "Kafka unavailable")
            _problem(client.get("/health/pipeline"), "Kafka unavailable")
            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            samples = _samples(metrics.text)
            assert samples[("iot_pipeline_source_up", (("source", "kafka"),))] == 0
            assert samples[("iot_pipeline_quarantined_ranges_total", ())] == 1
            assert not [name for name, _ in samples if name == "iot_pipeline_stalled"]
            assert client.get("/ready").status_code == 200  # the store still answers
    finally:
        stop_api(process)


def test_redis_down_is_its_own_503_and_recovers_without_restart(
    settings: Settings, state: redis.Redis
) -> None:
    _stall(settings, state, time.time())
    proxy = TcpProxy(settings.redis_address)
    proxy.start()
    db = state.connection_pool.connection_kwargs["db"]
    process, url = start_api(
        settings, ETL_STALL_SECONDS=str(STALL), REDIS_URL=f"redis://127.0.0.1:{proxy.port}/{db}"
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/health/pipeline").status_code == 503  # stalled, and says so
            proxy.stop()
            _problem(client.get("/pipeline/status"), "Redis unavailable")
            _problem(client.get("/health/pipeline"), "Redis unavailable")
            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            samples = _samples(metrics.text)
            assert samples[("iot_pipeline_source_up", (("source", "redis"),))] == 0
            assert samples[("iot_pipeline_partition_lag", (("partition", "1"),))] == 3
            proxy.start()
            eventually(
                lambda: client.get("/pipeline/status").status_code == 200,
                20,
                "recovery after Redis came back",
                interval=0.5,
            )
            assert client.get("/health/pipeline").json()["status"] == "stalled"
    finally:
        stop_api(process)
        proxy.stop()
