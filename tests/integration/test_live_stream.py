"""The live stream on the real stack: readings within seconds of reaching Kafka, superseded by
the stored ones, one upstream for any number of clients, a connection cap, and resume."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from iot_pipeline.kafka_config import producer_config
from iot_pipeline.settings import Settings

from support.api_process import metric_value, start_api, stop_api, wait_live
from support.isolation import own_pipeline
from support.kafka_io import produce_readings
from support.processing import process_pending
from support.readings import sample_reading
from support.waiting import eventually

ARRIVAL_SECONDS = 15.0  # a generous bound for a wait on a condition; the bench measures p95


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "live") as own:
        yield own


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[str]:
    process, url = start_api(settings, API_STREAM_MAX_CLIENTS="150")
    wait_live(url)
    yield url
    stop_api(process)


@dataclass
class Listener:
    """One SSE client in a thread, keeping every event it receives."""

    url: str
    params: dict[str, Any] = field(default_factory=dict)
    last_event_id: str | None = None
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # id, kind, data
    connected: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    status: int = 0

    def start(self) -> Listener:
        threading.Thread(target=self._run, daemon=True).start()
        assert self.connected.wait(15), "the stream did not open"
        return self

    def _run(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server went away: the stream ends
            self._read()

    def _read(self) -> None:
        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        with (
            httpx.Client(base_url=self.url, timeout=httpx.Timeout(5, read=None)) as client,
            client.stream("GET", "/stream/readings", params=self.params, headers=headers) as r,
        ):
            self.status = r.status_code
            self.connected.set()
            event_id, kind = "", "message"
            for line in r.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.append((event_id, kind, json.loads(line[6:])))
                elif line == "":
                    event_id, kind = "", "message"

    def readings(self, provisional: bool | None = None) -> list[dict[str, Any]]:
        return [
            data
            for _, kind, data in self.events
            if kind == "reading" and (provisional is None or data["provisional"] is provisional)
        ]

    def wait_for(
        self, predicate: Callable[[], object], what: str, seconds: float = ARRIVAL_SECONDS
    ) -> None:
        try:
            eventually(predicate, seconds, what, interval=0.05)
        except AssertionError as failure:
            raise AssertionError(f"{failure}; got {self.events}") from None


def _produce(settings: Settings, readings: list[dict[str, Any]]) -> float:
    """Send readings keyed by sensor; returns when they were acknowledged."""
    produce_readings(settings, readings)
    return time.time()


def _readings(count: int, tag: str, **change: Any) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        sample_reading(
            **{
                "event_id": f"{tag}-{i}",
                "sensor_id": f"casa-anfa-0{i % 3 + 1}-temperature",
                "station_id": f"casa-anfa-0{i % 3 + 1}",
                "seq": i,
                "value": 20.0 + i / 10,
                "event_time": (now - timedelta(seconds=count - i)).strftime(
                    "%Y-%m-%dT%H:%M:%S.%fZ"
                ),
                **change,
            }
        )
        for i in range(count)
    ]


def test_provisional_within_seconds_then_the_stored_verdict_under_the_same_id(
    settings: Settings, api: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    listener = Listener(api, {"district": "Anfa"}).start()
    good = _readings(12, tag)
    impossible = _readings(1, f"{tag}-x", value=999.0)  # beyond any air temperature
    produced_at = _produce(settings, good + impossible)
    listener.wait_for(lambda: len(listener.readings(provisional=True)) >= 13, "provisional")
    arrival = time.time() - produced_at
    provisional = {r["id"]: r for r in listener.readings(provisional=True)}
    assert len(provisional) == 13
    assert {r["batch_id"] for r in provisional.values()} == {"live"}
    bad = provisional[f"casa-anfa-01-temperature:{tag}-x-0"]
    assert (bad["valid"], bad["flags"]) == (False, ["impossible_value"])  # marked, not hidden
    assert all(r["valid"] for i, r in provisional.items() if i != bad["id"])

    process_pending(settings, f"batch-{tag}")  # the durable path: a worker stores them
    listener.wait_for(lambda: len(listener.readings(provisional=False)) >= 13, "durable")
    durable = {r["id"]: r for r in listener.readings(provisional=False)}
    assert set(durable) == set(provisional)
    assert {r["batch_id"] for r in durable.values()} == {f"batch-{tag}"}
    for doc_id, stored in durable.items():
        assert stored["value"] == provisional[doc_id]["value"]
    assert durable[bad["id"]]["valid"] is False
    listener.stop.set()
    print(f"provisional readings arrived {arrival:.2f}s after the producer's acknowledgement")


def test_resume_with_last_event_id_loses_nothing(settings: Settings, api: str) -> None:
    tag = uuid.uuid4().hex[:6]
    witness = Listener(api, {"metric": "temperature"}).start()  # connected all along
    first = Listener(api, {"metric": "temperature"}).start()
    _produce(settings, _readings(5, f"{tag}-a"))
    first.wait_for(lambda: len(first.readings()) >= 5, "first part")
    first.stop.set()
    last_id = [i for i, kind, _ in first.events if kind == "reading"][-1]
    _produce(settings, _readings(7, f"{tag}-b"))  # while nobody is reading on the first stream
    witness.wait_for(lambda: len(witness.readings()) >= 12, "witness")
    resumed = Listener(api, {"metric": "temperature"}, last_event_id=last_id).start()
    resumed.wait_for(lambda: len(resumed.readings()) >= 7, "resumed")
    seen = [r["id"] for r in first.readings()] + [r["id"] for r in resumed.readings()]
    assert sorted(seen) == sorted(r["id"] for r in witness.readings())
    assert not any(kind == "gap" for _, kind, _ in resumed.events)

    stranger = Listener(api, {"metric": "temperature"}, last_event_id="0000-12").start()
    stranger.wait_for(lambda: any(k == "gap" for _, k, _ in stranger.events), "gap notice")
    for listener in (witness, resumed, stranger):
        listener.stop.set()


def _search_queries(settings: Settings) -> int:
    response = httpx.get(
        f"{settings.search_url}/{settings.search_index_prefix}-*/_stats/search", timeout=10
    ).json()
    return int(response.get("_all", {}).get("total", {}).get("search", {}).get("query_total", 0))


def test_a_hundred_streams_share_one_upstream_and_query_nothing(
    settings: Settings, api: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    clients = 100
    counts = [0] * clients

    async def listen(i: int, client: httpx.AsyncClient, ready: asyncio.Event) -> None:
        async with client.stream("GET", "/stream/readings", params={"district": "Anfa"}) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith(": connected"):
                    ready.set()
                if line.startswith("data: ") and tag in line:
                    counts[i] += 1
                    if counts[i] >= 6:
                        return

    async def main() -> tuple[float, float, int]:
        limits = httpx.Limits(max_connections=clients + 10)
        timeout = httpx.Timeout(10, read=60)
        async with httpx.AsyncClient(base_url=api, limits=limits, timeout=timeout) as client:
            ready = [asyncio.Event() for _ in range(clients)]
            tasks = [asyncio.create_task(listen(i, client, ready[i])) for i in range(clients)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 30)
            open_clients = await asyncio.to_thread(metric_value, api, "iot_api_stream_clients")
            upstreams = await asyncio.to_thread(metric_value, api, "iot_api_live_upstreams")
            before = await asyncio.to_thread(_search_queries, settings)
            await asyncio.to_thread(_produce, settings, _readings(6, tag))
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            after = await asyncio.to_thread(_search_queries, settings)
            return open_clients, upstreams, after - before

    open_clients, upstreams, queries = asyncio.run(main())
    assert open_clients >= clients
    assert upstreams == 2  # one Kafka consumer and one Redis subscription, for all of them
    assert counts == [6] * clients  # every client got every reading it asked for
    assert queries == 0  # the stream never asks the search node


def test_beyond_the_cap_a_stream_is_refused_with_retry_after(settings: Settings) -> None:
    process, url = start_api(settings, API_STREAM_MAX_CLIENTS="2")
    try:
        wait_live(url)
        held = [Listener(url).start() for _ in range(2)]
        refused = httpx.get(f"{url}/stream/readings", timeout=10)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["title"] == "Too many streams"
        assert all(listener.status == 200 for listener in held)
    finally:
        stop_api(process)


def test_hostile_records_neither_stop_the_live_path_nor_reach_the_stream(
    settings: Settings, api: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    listener = Listener(api, {"district": "Anfa"}).start()
    producer = Producer(producer_config(settings))
    topic = settings.kafka_sensor_data_topic
    for hostile in (
        b"\xff\xfe not json",
        b"[" * 100_000,  # deeper than any parser's stack
        json.dumps({**sample_reading(), "value": "NaN"}).encode(),
        json.dumps({**sample_reading(), "event_time": "9999-12-31T23:59:59Z"}).encode(),
        json.dumps({**sample_reading(), "unit": "°F", "metric": "pm25"}).encode(),
        b"",
    ):
        producer.produce(topic, key=b"casa-anfa-01-temperature", value=hostile)
    assert producer.flush(15) == 0
    _produce(settings, _readings(3, tag))
    listener.wait_for(lambda: len(listener.readings(provisional=True)) >= 3, "after the hostile")
    assert {r["event_id"] for r in listener.readings()} == {f"{tag}-{i}" for i in range(3)}
    assert metric_value(api, "iot_api_live_upstreams") == 2
    assert metric_value(api, "iot_api_live_errors_total") == 0
    listener.stop.set()


def _skipped(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    line = next(
        x for x in text.splitlines() if x.startswith('iot_api_live_events_total{kind="skipped"}')
    )
    return float(line.split()[-1])


def test_an_api_nobody_listens_to_lets_readings_go_and_the_next_client_gets_them_again(
    settings: Settings,
) -> None:
    process, url = start_api(settings, API_STREAM_IDLE_SECONDS="1")
    try:
        wait_live(url)
        tag = uuid.uuid4().hex[:6]

        def let_go() -> bool:  # idle a second after the start: readings are let go
            if _skipped(url) >= 4:
                return True
            _produce(settings, _readings(4, f"{tag}-idle"))
            return False

        eventually(
            let_go, ARRIVAL_SECONDS, "readings let go by an API without clients", interval=0.5
        )
        listener = Listener(url, {"metric": "temperature"}).start()
        _produce(settings, _readings(5, f"{tag}-heard"))
        listener.wait_for(lambda: len(listener.readings(provisional=True)) >= 5, "after idle")
        assert all(f"{tag}-heard" in r["id"] for r in listener.readings())
        listener.stop.set()
    finally:
        stop_api(process)
