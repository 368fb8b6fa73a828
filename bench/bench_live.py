"""Benchmark: the live stream's latency, against the schedule-bound freshness of the same run.

1. **Default rate, the running stack** (`make up`: simulator, scheduler and workers running):
   100 SSE clients on the API for `--seconds`. For each reading one client receives, latency is
   the receipt time minus its event time (the simulator stamps a reading when it produces
   it): `provisional` events come from the live path, `durable` ones once a scheduled batch
   stored them. The durable figure is what "live" meant before the live path: the baseline.
   The search node's query rate is sampled with 1 client and with 100: the stream must not
   query it (the rate must not grow with the clients).
2. **5,000 readings/s**: an API process of its own on a topic of its own, 100 clients (each
   filtering one district, one with no filter), readings produced at 5,000/s with their event
   time set at production.

p50, p95 and p99 in seconds; the goal is p95 <= 2 s at the default rate and <= 5 s at 5,000/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from iot_pipeline.generator.network import DISTRICTS  # noqa: E402
from iot_pipeline.kafka_config import producer_config  # noqa: E402
from iot_pipeline.settings import Settings  # noqa: E402

from support.api_process import start_api, stop_api  # noqa: E402
from support.isolation import own_pipeline  # noqa: E402

CLIENTS = 100


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return statistics.median(ordered), at(0.95), at(0.99)


def _event_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _search_queries(settings: Settings) -> int:
    stats = httpx.get(f"{settings.search_url}/_nodes/stats/indices/search", timeout=10).json()
    return sum(int(n["indices"]["search"]["query_total"]) for n in stats["nodes"].values())


async def _listen(
    client: httpx.AsyncClient,
    params: dict[str, str],
    stop: asyncio.Event,
    ready: asyncio.Event,
    sink: dict[str, list[float]] | None,
) -> int:
    """One SSE client; when `sink` is given, records each reading's latency by kind."""
    received = 0
    async with client.stream("GET", "/stream/readings", params=params) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith(": connected"):
                ready.set()
            elif line.startswith("data: "):
                received += 1
                if sink is not None:
                    now = time.time()
                    event = orjson.loads(line[6:])
                    if "event_time" in event:
                        kind = "provisional" if event["provisional"] else "durable"
                        sink[kind].append(now - _event_time(event["event_time"]))
            if stop.is_set():
                break
    return received


async def _swarm(
    url: str, seconds: float, filters: list[dict[str, str]], sample: float | None = None
) -> tuple[dict[str, list[float]], int, float | None]:
    """`len(filters)` clients for `seconds`; the first records latencies. With `sample`, the
    node's query rate is measured over that many seconds once all are connected."""
    sink: dict[str, list[float]] = {"provisional": [], "durable": []}
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=len(filters) + 10)
    timeout = httpx.Timeout(10, read=None)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        ready = [asyncio.Event() for _ in filters]
        tasks = [
            asyncio.create_task(_listen(client, f, stop, ready[i], sink if i == 0 else None))
            for i, f in enumerate(filters)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 60)
        rate = None
        if sample:
            settings = Settings()
            before = await asyncio.to_thread(_search_queries, settings)
            await asyncio.sleep(sample)
            rate = (await asyncio.to_thread(_search_queries, settings) - before) / sample
        await asyncio.sleep(max(0.0, seconds - (sample or 0)))
        stop.set()
        done, pending = await asyncio.wait(tasks, timeout=20)
        for task in pending:
            task.cancel()
        received = sum(t.result() for t in done if not t.cancelled() and not t.exception())
    return sink, received, rate


def _row(label: str, values: list[float]) -> str:
    if not values:
        return f"{label:<52} {'-':>8} {'-':>8} {'-':>8} {0:>8}"
    p50, p95, p99 = _percentiles(values)
    return f"{label:<52} {p50:>8.2f} {p95:>8.2f} {p99:>8.2f} {len(values):>8}"


def _produce_at(settings: Settings, rate: int, seconds: float, stop: threading.Event) -> int:
    """Readings at `rate`/s for `seconds`, spread over every district, event time = now."""
    producer = Producer({**producer_config(settings), "linger.ms": 5})
    topic = settings.kafka_sensor_data_topic
    sent = 0
    started = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        while sent < due:
            district = DISTRICTS[sent % len(DISTRICTS)].name
            sensor = f"bench-{sent % 700}-pm25"
            reading = {
                "schema_version": 1,
                "event_id": f"b-{sent}",
                "sensor_id": sensor,
                "station_id": f"bench-{sent % 700}",
                "district": district,
                "metric": "pm25",
                "value": 10.0 + sent % 50,
                "unit": "µg/m³",
                "event_time": stamp,
                "seq": sent,
                "lat": 33.58,
                "lon": -7.62,
                "battery_pct": 80.0,
                "firmware": "3.0.2",
            }
            producer.produce(topic, key=sensor.encode(), value=json.dumps(reading).encode())
            sent += 1
            if sent % 1000 == 0:
                producer.poll(0)
        time.sleep(0.002)
    producer.flush(30)
    return sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=150, help="default-rate sampling")
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--rate-seconds", type=float, default=20)
    args = parser.parse_args()
    settings = Settings()
    url = f"http://127.0.0.1:{settings.api_port}"
    try:
        httpx.get(f"{url}/health", timeout=5).raise_for_status()
    except httpx.HTTPError:
        print("live: needs the stack running (make up)", file=sys.stderr)
        return 1
    everyone: list[dict[str, str]] = [{}]
    everyone += [{"district": DISTRICTS[i % len(DISTRICTS)].name} for i in range(CLIENTS - 1)]

    print(f"live: 1 client, then {CLIENTS}, on the running stack for {args.seconds:.0f}s ...")
    _, _, one_rate = asyncio.run(_swarm(url, 12, [{}], sample=10))
    default, received, many_rate = asyncio.run(_swarm(url, args.seconds, everyone, sample=10))

    print(f"live: {CLIENTS} clients at {args.rate}/s on a topic of its own ...")
    with own_pipeline(settings, "bench-live") as own:
        process, own_url = start_api(own)
        try:
            deadline = time.monotonic() + 30
            while "iot_api_live_upstreams 2.0" not in httpx.get(f"{own_url}/metrics").text:
                if time.monotonic() > deadline:
                    print("live: the bench API's live path did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            stop = threading.Event()
            produced: list[int] = []

            def produce() -> None:
                time.sleep(3)  # once the clients are connected
                produced.append(_produce_at(own, args.rate, args.rate_seconds, stop))

            thread = threading.Thread(target=produce, daemon=True)
            thread.start()
            loaded, loaded_received, _ = asyncio.run(
                _swarm(own_url, args.rate_seconds + 8, everyone)
            )
            stop.set()
            thread.join(30)
        finally:
            stop_api(process)

    print()
    print(
        f"{'latency, production to SSE delivery (seconds)':<52} {'p50':>8} {'p95':>8} "
        f"{'p99':>8} {'readings':>8}"
    )
    print(_row("default rate: durable, schedule-bound (baseline)", default["durable"]))
    print(_row("default rate: live path (provisional)", default["provisional"]))
    print(_row(f"{args.rate}/s: live path (provisional)", loaded["provisional"]))
    base = _percentiles(default["durable"])[1] if default["durable"] else float("nan")
    live = _percentiles(default["provisional"])[1] if default["provisional"] else float("nan")
    print(f"p95 ratio live / schedule-bound at the default rate: {live / base:.3f}")
    print(
        f"events delivered to {CLIENTS} clients: {received} (default rate), "
        f"{loaded_received} ({args.rate}/s, {produced[0] if produced else 0} produced)"
    )
    print(
        f"search node queries/s: {one_rate:.1f} with 1 client, {many_rate:.1f} with "
        f"{CLIENTS} (the workers' own queries included; the stream adds none)"
    )
    print("goal: p95 <= 2 s at the default rate, <= 5 s at 5,000/s, with 100 clients")
    return 0


if __name__ == "__main__":
    sys.exit(main())
