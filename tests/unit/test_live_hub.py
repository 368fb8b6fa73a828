"""The live hub's fan-out, filters, buffer and resume rules (no upstream: documents are
published directly)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest

from iot_pipeline.api.live.hub import Filter, LiveHub
from iot_pipeline.settings import Settings


def _doc(i: int, **change: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": f"e-{i}",
        "sensor_id": f"casa-anfa-0{i % 2 + 1}-pm25",
        "district": "Anfa",
        "metric": "pm25",
        "valid": True,
        "flags": [],
    }
    return {**doc, **change}


def test_each_client_gets_what_it_asked_for_and_a_slow_one_is_dropped() -> None:
    async def main() -> None:
        hub = LiveHub(Settings(api_stream_buffer=100, api_stream_client_queue=10))
        everything, _ = hub.subscribe(Filter(), None)
        one_sensor, _ = hub.subscribe(Filter(sensors=frozenset({"casa-anfa-01-pm25"})), None)
        invalid, _ = hub.subscribe(Filter(quality="invalid"), None)
        hub.publish([_doc(i) for i in range(6)] + [_doc(9, valid=False)], provisional=True)
        assert everything.queue.qsize() == 7
        assert one_sensor.queue.qsize() == 3  # e-1, e-3, e-5 (and not e-9: another sensor)
        assert invalid.queue.qsize() == 1
        hub.publish([_doc(i) for i in range(10, 20)], provisional=False)
        assert everything.overflowed  # 17 events for a queue of 10
        assert not invalid.overflowed
        assert hub.stats.dropped_clients == 1
        assert (hub.stats.provisional, hub.stats.durable) == (7, 10)

    asyncio.run(main())


def test_resume_replays_what_was_missed_or_says_there_is_a_gap() -> None:
    async def main() -> None:
        hub = LiveHub(Settings(api_stream_buffer=100))
        hub.publish([_doc(i) for i in range(5)], provisional=True)
        last = hub.event_id(hub.buffer[1])  # the client saw the first two
        assert hub.resumable(last)
        assert [e.seq for e in hub.missed(Filter(), last)] == [3, 4, 5]
        assert not hub.resumable("another-process-2")
        assert not hub.resumable(None)
        hub.publish([_doc(i) for i in range(5, 205)], provisional=True)  # buffer holds 100
        assert not hub.resumable(last)
        assert hub.resumable(hub.event_id(hub.buffer[0]))

    asyncio.run(main())


def test_with_no_client_for_the_idle_limit_the_hub_lets_readings_go_and_says_so() -> None:
    async def main() -> None:
        hub = LiveHub(Settings(api_stream_buffer=100, api_stream_idle_seconds=0.05))
        client, _ = hub.subscribe(Filter(), None)
        hub.publish([_doc(i) for i in range(3)], provisional=True)
        last = hub.event_id(hub.buffer[-1])
        hub.unsubscribe(client)
        assert not hub.idle()  # the last client only just left: a reconnect resumes
        await asyncio.sleep(0.06)
        assert hub.idle()
        hub.skip(4)  # what the upstreams let go meanwhile
        assert hub.stats.skipped == 4
        assert not hub.buffer
        assert not hub.resumable(last)  # told there is a gap, never silently short
        again, _ = hub.subscribe(Filter(), last)
        assert not hub.idle()
        hub.publish([_doc(9)], provisional=False)
        assert again.queue.qsize() == 1
        assert hub.buffer[-1].seq == 8  # 3 published, 4 let go, then this one

    asyncio.run(main())


def test_an_idle_limit_of_zero_never_lets_a_reading_go() -> None:
    async def main() -> None:
        hub = LiveHub(Settings(api_stream_idle_seconds=0))
        await asyncio.sleep(0.01)
        assert not hub.idle()

    asyncio.run(main())


@pytest.mark.parametrize("spec", ["2.3", "2.4"])  # uvicorn's h11 server says 2.3
def test_a_stream_whose_client_stops_reading_ends_and_frees_its_slot(spec: str) -> None:
    """Each write of an event stream gets the send timeout: a client that stopped reading
    (the write never completes) ends the response, and its slot is released."""
    from iot_pipeline.api.live.sse import EventStream

    released: list[bool] = []

    async def frames() -> Any:
        while True:
            yield ": keep-alive\n\n"

    async def run() -> None:
        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        sent: list[MutableMapping[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:  # an ASGI send
            sent.append(message)
            if message["type"] == "http.response.body":
                await asyncio.sleep(3600)  # the client's window is full: never drains

        response = EventStream(frames(), release=lambda: released.append(True), send_timeout=0.2)
        scope = {"type": "http", "asgi": {"spec_version": spec}}
        await asyncio.wait_for(response(scope, receive, send), 5)
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]

    asyncio.run(run())
    assert released == [True]


def test_a_consumer_that_cannot_be_assigned_is_closed_and_never_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kafka up but the topic missing: the live path retries without counting an upstream
    it never had (the gauge never goes below zero) and closes each consumer it opened."""
    from confluent_kafka import KafkaException

    from iot_pipeline.api.live import provisional

    hub = LiveHub(Settings())
    closed: list[int] = []

    class Refusing:
        def list_topics(self, topic: str, timeout: float) -> Any:
            hub.stopping.set()  # one attempt is enough
            raise KafkaException("unknown topic")

        def close(self) -> None:
            closed.append(1)

    monkeypatch.setattr(provisional, "open_consumer", lambda *_a, **_k: Refusing())
    provisional.consume(hub)
    assert hub.stats.upstreams == 0
    assert closed == [1]
    assert hub.stats.errors == 1
