"""Faults a production deployment meets, injected into the running native stack while the
*scheduled* pipeline (Airflow's `iot_sensor_etl`, the stack's worker, the live topic) drains a
known backlog, one fault per test:

(a) the worker SIGKILLed mid-range (its whole process group, as a container kill does),
(b) the search node stopped for 30 s mid-run,
(c) Kafka restarted, (d) Redis restarted, mid-run, and Redis SIGKILLed (supervisord starts
it again; its append-only file is fsynced every second),
(e) the Airflow scheduler SIGKILLed mid-run (its executor and task processes with it).

After each: every produced reading is stored exactly once and valid, the windows of the
backlog's sensors and district equal an offline computation over what was produced, the live
group's offsets are committed past the backlog, no dead letter names the backlog, and every
process of the stack is back and healthy without anyone restarting it. The time from the fault
to full recovery is printed at the end of the session.

The backlog has its own district and sensors (so its windows hold nothing else), stations far
from the simulated network (so no neighbour of another district judges them) and smooth
values that no quality rule may flag; its event times lie in the last hours.
"""

from __future__ import annotations

import base64
import functools
import math
import os
import signal
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from celery import Celery
from confluent_kafka import Consumer, Producer, TopicPartition

from iot_pipeline.contracts.positions import positions
from iot_pipeline.contracts.probes import (
    Health,
    api_health,
    kafka_health,
    redis_health,
    search_health,
    worker_health,
)
from iot_pipeline.contracts.tasks import create_app
from iot_pipeline.errors import OffsetsError, TransientStoreError
from iot_pipeline.kafka_config import consumer_config, producer_config
from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.airflow_services import component_health
from iot_pipeline.stack.model import StackPaths
from iot_pipeline.stack.supervisor import Supervisor
from iot_pipeline.storage import SearchStore, make_store

from support.ground_truth import assert_windows_equal, document_id
from support.kafka_io import coordinates
from support.recovery_log import RESULTS
from support.waiting import eventually

SENSORS = 24  # half temperature, half humidity
PER_SENSOR = 1000  # one reading every CADENCE: 24,000 readings over 83 minutes
CADENCE = timedelta(seconds=5)
RECOVERY_DEADLINE = 600.0  # seconds from the fault until everything must be back
SEARCH_OUTAGE = 30.0
# Where the backlog's stations stand: inland, 26 km or more from every simulated station, so
# the buddy check compares them with one another only. Among the live network they would be
# judged against its humidity, which at night runs 20 %RH above the backlog's 60.
SITE = (33.27, -7.58)

PROBES: dict[str, Callable[[StackSettings], Health]] = {
    "redis": redis_health,
    "kafka": kafka_health,
    "opensearch": search_health,
    "worker": worker_health,
    "api": api_health,
    "airflow-scheduler": component_health("scheduler"),
    "airflow-triggerer": component_health("triggerer"),
    "airflow-dag-processor": component_health("dag_processor"),
}


@pytest.fixture(scope="module")
def supervisor(base_settings: StackSettings) -> Supervisor:
    supervisor = Supervisor(StackPaths.from_settings(base_settings))
    if not supervisor.is_running():
        pytest.skip("chaos needs the stack started by `make up` (no supervisord here)")
    needed = ("worker", "airflow-scheduler", "generator")
    states = {name: supervisor.state(name) for name in needed}
    if any(state != "RUNNING" for state in states.values()):
        pytest.skip(f"the running stack lacks the scheduled pipeline: {states}")
    return supervisor


@pytest.fixture(scope="module")
def celery(base_settings: StackSettings) -> Iterator[Celery]:
    """A client of the live pipeline's broker (to see which ranges the worker holds)."""
    app = create_app(base_settings)
    yield app
    app.close()


@pytest.fixture(scope="module")
def store(base_settings: StackSettings) -> Iterator[SearchStore]:
    store = make_store(base_settings)
    yield store
    store.close()


@pytest.fixture(scope="module")
def chaos_tags(base_settings: StackSettings) -> Iterator[list[str]]:
    """The backlogs' tags; their readings and windows are deleted from the live indices at
    the end, so the live API never lists the test districts."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        delete_backlog(base_settings, tag)


def delete_backlog(settings: StackSettings, tag: str) -> None:
    prefix = settings.search_index_prefix
    for index, query in (
        (f"{prefix}-readings-*", {"term": {"district": f"Chaos-{tag}"}}),
        (
            f"{prefix}-agg-*",
            {
                "bool": {
                    "should": [
                        {"term": {"key": f"Chaos-{tag}"}},
                        {"prefix": {"key": f"casa-chaos{tag}-"}},
                    ]
                }
            },
        ),
    ):
        request = urllib.request.Request(  # noqa: S310 - the stack's own search URL
            f"{settings.search_url}/{index}/_delete_by_query?conflicts=proceed&refresh=true",
            data=orjson.dumps({"query": query}),
            headers={"Content-Type": "application/json", **_auth(settings)},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            response.read()


def _auth(settings: StackSettings) -> dict[str, str]:
    if not settings.search_username:
        return {}
    token = f"{settings.search_username}:{settings.search_password.get_secret_value()}"
    return {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}


# --- the backlog ---------------------------------------------------------------------------


def backlog(tag: str, end: datetime) -> list[dict[str, Any]]:
    """SENSORS x PER_SENSOR smooth, plausible readings of district `Chaos-<tag>`, ending at
    `end`, in production order (all sensors, time step by time step)."""
    district = f"Chaos-{tag}"
    readings = []
    for i in range(PER_SENSOR):
        moment = end - (PER_SENSOR - i) * CADENCE
        for s in range(SENSORS):
            metric, unit, base = (
                ("temperature", "°C", 18.0) if s % 2 == 0 else ("humidity", "%", 60.0)
            )
            station = f"casa-chaos{tag}-{s:02d}"
            # a slow swing plus a small wobble: never equal twice, never a jump
            value = base + 1.5 * math.sin(i / 150 + s) + 0.02 * ((i * 37 + s * 11) % 17) / 17
            readings.append(
                {
                    "schema_version": 1,
                    "event_id": f"chaos-{tag}-{s:02d}-{i:05d}",
                    "sensor_id": f"{station}-{metric}",
                    "station_id": station,
                    "district": district,
                    "metric": metric,
                    "value": value,
                    "unit": unit,
                    "event_time": moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "seq": i,
                    "lat": SITE[0] + s / 1000,
                    "lon": SITE[1] - s / 1000,
                    "battery_pct": 90.0,
                    "firmware": "3.0.2",
                }
            )
    return readings


def produce(settings: StackSettings, readings: list[dict[str, Any]]) -> None:
    producer = Producer(producer_config(settings))
    for reading in readings:
        while True:
            try:
                producer.produce(
                    settings.kafka_sensor_data_topic,
                    key=str(reading["sensor_id"]).encode(),
                    value=orjson.dumps(reading),
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0, "the backlog was not fully produced"


def offline_windows(
    readings: list[dict[str, Any]],
) -> dict[tuple[str, str, str, str, str], list[float]]:
    """The backlog's windows (both scopes, three resolutions), computed with plain Python."""
    sizes = {"1m": 60, "1h": 3600, "1d": 86400}
    windows: dict[tuple[str, str, str, str, str], list[float]] = defaultdict(list)
    for r in readings:
        epoch = datetime.fromisoformat(r["event_time"]).timestamp()
        for resolution, size in sizes.items():
            start = datetime.fromtimestamp(epoch // size * size, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.000Z"
            )
            for scope, key in (("sensor", r["sensor_id"]), ("district", r["district"])):
                windows[(scope, key, r["metric"], resolution, start)].append(r["value"])
    return windows


# --- what the pipeline did -----------------------------------------------------------------


def _all_hits(store: SearchStore, index: str, query: dict[str, Any], sort: list[Any]) -> list[Any]:
    store.refresh(index)
    body: dict[str, Any] = {"size": 5000, "query": query, "sort": sort}
    hits: list[Any] = []
    while True:
        page = store.search(index, body)["hits"]["hits"]
        hits += page
        if len(page) < body["size"]:
            return hits
        body["search_after"] = page[-1]["sort"]


def stored_readings(store: SearchStore, prefix: str, district: str) -> list[Any]:
    return _all_hits(
        store,
        f"{prefix}-readings-*",
        {"term": {"district": district}},
        [{"event_id": "asc"}, {"sensor_id": "asc"}],
    )


def stored_windows(store: SearchStore, prefix: str, tag: str) -> dict[tuple[str, ...], Any]:
    query = {
        "bool": {
            "should": [
                {"term": {"key": f"Chaos-{tag}"}},
                {"prefix": {"key": f"casa-chaos{tag}-"}},
            ]
        }
    }
    hits = _all_hits(
        store,
        f"{prefix}-agg-*",
        query,
        [{"resolution": "asc"}, {"key": "asc"}, {"metric": "asc"}, {"window_start": "asc"}],
    )
    fields = ("scope", "key", "metric", "resolution", "window_start")
    return {tuple(h["_source"][f] for f in fields): h["_source"] for h in hits}


def committed_past(settings: StackSettings, targets: dict[int, int]) -> bool:
    try:
        group = positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    except OffsetsError:
        return False
    done = {p.partition: p.committed for p in group}
    return all(done.get(p, -1) >= high for p, high in targets.items())


def highs(settings: StackSettings, topic: str) -> dict[int, int]:
    consumer = Consumer(consumer_config(settings, f"test.chaos.{uuid.uuid4().hex[:8]}"))
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in parts
        }
    finally:
        consumer.close()


def dead_letters_naming(settings: StackSettings, since: dict[int, int], text: str) -> list[bytes]:
    """Dead letters written after `since` (partition -> offset) that mention `text`."""
    topic = settings.dead_letter_topic
    until = highs(settings, topic)
    consumer = Consumer(consumer_config(settings, f"test.chaos.{uuid.uuid4().hex[:8]}"))
    consumer.assign([TopicPartition(topic, p, since.get(p, 0)) for p in until])
    found: list[bytes] = []
    remaining = {p for p, high in until.items() if high > since.get(p, 0)}
    deadline = time.monotonic() + 60
    try:
        while remaining and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            value = message.value() or b""
            if text.encode() in value:
                found.append(value)
            partition, offset = coordinates(message)
            if offset + 1 >= until[partition]:
                remaining.discard(partition)
    finally:
        consumer.close()
    assert not remaining, f"could not read the dead-letter topic to its end: {remaining}"
    return found


def flag_summary(hits: list[Any]) -> str:
    """Which flags, on how many readings of which sensors, and the first reading of each."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for hit in hits:
        source = hit["_source"]
        flags = ",".join(source.get("flags") or []) or "invalid, no flag"
        found[(flags, source["sensor_id"])].append(source["event_time"])
    return "; ".join(
        f"{flags} x{len(times)} on {sensor} from {min(times)}"
        for (flags, sensor), times in sorted(found.items())
    )


def unhealthy(settings: StackSettings, supervisor: Supervisor) -> dict[str, str]:
    """Every supervised process that is not RUNNING or whose probe fails, and why."""
    bad = {}
    for name, probe in PROBES.items():
        state = supervisor.state(name)
        if state is None:
            continue  # not part of this stack (disabled at `make up`)
        if state != "RUNNING":
            bad[name] = f"supervisord: {state}"
            continue
        health = probe(settings)
        if not health.ok:
            bad[name] = health.detail
    return bad


def backlog_in_progress(app: Celery, settings: StackSettings, before: dict[int, int]) -> bool:
    """Whether a worker is processing a range of the backlog (offsets from `before` on) now."""
    active = app.control.inspect(timeout=0.5).active() or {}
    for tasks in active.values():
        for task in tasks:
            args = task.get("args") or [{}]
            r = args[0].get("range", {}) if isinstance(args[0], dict) else {}
            if r.get("topic") != settings.kafka_sensor_data_topic:
                continue
            if int(r.get("end", 0)) > before.get(int(r.get("partition", -1)), 1 << 62):
                return True
    return False


def in_progress_or_done(
    app: Celery, settings: StackSettings, before: dict[int, int], targets: dict[int, int]
) -> bool:
    return backlog_in_progress(app, settings, before) or committed_past(settings, targets)


# --- the faults ----------------------------------------------------------------------------


def kill_group(supervisor: Supervisor, name: str) -> None:
    pid = supervisor.pid(name)
    assert pid, f"{name} is not running"
    os.killpg(os.getpgid(pid), signal.SIGKILL)


def restart(supervisor: Supervisor, name: str, down_for: float = 0.0) -> None:
    supervisor.stop(name)
    stopped = time.monotonic()
    while time.monotonic() - stopped < down_for:  # the outage itself is the fault
        time.sleep(0.5)
    supervisor.start(name)


FAULTS: dict[str, Callable[[Supervisor], None]] = {
    "worker SIGKILL mid-range": lambda s: kill_group(s, "worker"),
    "search node down 30 s": lambda s: restart(s, "opensearch", SEARCH_OUTAGE),
    "Kafka restart": lambda s: restart(s, "kafka"),
    "Redis restart": lambda s: restart(s, "redis"),
    "Redis SIGKILL": lambda s: kill_group(s, "redis"),
    "scheduler SIGKILL": lambda s: kill_group(s, "airflow-scheduler"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_pipeline_recovers_by_itself_and_loses_nothing(
    fault: str,
    base_settings: StackSettings,
    supervisor: Supervisor,
    store: SearchStore,
    celery: Celery,
    chaos_tags: list[str],
) -> None:
    settings = base_settings
    eventually(
        lambda: not unhealthy(settings, supervisor),
        120,
        "the stack healthy before the fault",
        interval=1,
    )
    dlq_before = highs(settings, settings.dead_letter_topic)
    restarts_before = supervisor.restarts()
    for _ in range(3):  # a backlog drained before it was seen in progress: another one
        tag = uuid.uuid4().hex[:8]
        chaos_tags.append(tag)
        readings = backlog(tag, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2))
        before = highs(settings, settings.kafka_sensor_data_topic)
        produce(settings, readings)
        targets = highs(settings, settings.kafka_sensor_data_topic)

        # a scheduled run is processing a range of the backlog (or already drained it)
        eventually(
            functools.partial(in_progress_or_done, celery, settings, before, targets),
            180,
            "the backlog in progress",
            interval=0,  # an inspection waits half a second for the replies
        )
        if not committed_past(settings, targets):
            break
    else:
        pytest.fail("three backlogs were drained before a range of them was seen in progress")
    district = f"Chaos-{tag}"
    started = time.monotonic()
    FAULTS[fault](supervisor)
    fault_over = time.monotonic()

    progress: dict[str, object] = {}

    def recovered() -> bool:
        progress["unhealthy"] = unhealthy(settings, supervisor)
        if progress["unhealthy"]:
            return False
        progress["committed"] = committed_past(settings, targets)
        if not progress["committed"]:
            return False
        try:
            progress["stored"] = store.count(
                f"{settings.search_index_prefix}-readings-*", {"term": {"district": district}}
            )
        except TransientStoreError:
            return False
        return progress["stored"] == len(readings)

    try:
        eventually(recovered, RECOVERY_DEADLINE, f"recovery from {fault}", interval=1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {progress}") from None
    recovery = time.monotonic() - started

    hits = stored_readings(store, settings.search_index_prefix, district)
    ids = [h["_id"] for h in hits]
    expected = {document_id(str(r["sensor_id"]), str(r["event_id"])) for r in readings}
    lost = expected - set(ids)
    duplicates = len(ids) - len(set(ids))
    flagged = [h for h in hits if not h["_source"]["valid"] or h["_source"].get("flags")]
    dead = dead_letters_naming(settings, dlq_before, district)
    assert not lost, f"lost {len(lost)} readings, e.g. {sorted(lost)[:3]}"
    assert not duplicates, f"{duplicates} readings stored twice"
    assert set(ids) == expected
    assert not flagged, f"{len(flagged)} valid readings flagged: {flag_summary(flagged)}"
    assert dead == [], f"{len(dead)} dead letters for valid readings, e.g. {dead[0][:300]!r}"

    truth = offline_windows(readings)
    assert_windows_equal(truth, stored_windows(store, settings.search_index_prefix, tag))

    restarts = {
        name: count - restarts_before.get(name, 0)
        for name, count in supervisor.restarts().items()
        if count > restarts_before.get(name, 0)
    }
    RESULTS.append(
        f"{fault:<26} recovered {recovery:6.1f}s after the fault "
        f"(fault itself {fault_over - started:4.1f}s); {len(readings)} readings: lost 0, "
        f"duplicated 0, dead-lettered 0, windows exact ({len(truth)}); "
        f"restarted by supervisord: {restarts or 'none'}"
    )
