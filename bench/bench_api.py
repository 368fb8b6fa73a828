"""Benchmark: the REST API against the same queries sent straight to the search node.

Dataset: 5 million simulated readings (9 days at one reading per sensor every 30 s, cleaned
by the pipeline's own cleaner) in the prefix `bench-api`, plus their 1-hour district
aggregates; loaded once and kept (`make clean` removes it). Then, with 32 concurrent clients:
`/readings` (24 h, limit 100) and `/aggregates` (1 h resolution, 7 days), each against the
equivalent search body POSTed to the node; `/readings/latest` and `/sensors`, which read the
sensor registry, against the search over the readings they sent before it (a collapse, a
terms + top_hits aggregation); p50 and p99, in this invocation.
Goal: API p99 <= 1.5 x direct p99 + 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Queue
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from iot_pipeline.api import queries, registry  # noqa: E402
from iot_pipeline.cleaning import CleaningPolicy, RawRecord, clean_batch  # noqa: E402
from iot_pipeline.contracts.readings import reading_actions  # noqa: E402
from iot_pipeline.generator.faults import FaultRates  # noqa: E402
from iot_pipeline.generator.network import build_network  # noqa: E402
from iot_pipeline.generator.stream import ReadingStream  # noqa: E402
from iot_pipeline.processing import registry as processing_registry  # noqa: E402
from iot_pipeline.settings import Settings  # noqa: E402
from iot_pipeline.storage import load_templates, make_store  # noqa: E402
from iot_pipeline.storage.base import bulk_body  # noqa: E402
from iot_pipeline.vocabulary import DUPLICATE  # noqa: E402

from support.api_process import start_api, stop_api  # noqa: E402

PREFIX = "bench-api"
TARGET = 5_000_000
INTERVAL = 30.0
CLIENTS = 32
MARKER = f"{PREFIX}-meta"


def _dataset_end(settings: Settings) -> datetime | None:
    """The end of a complete dataset already loaded, or None."""
    store = make_store(settings)
    try:
        meta = store.get_many(MARKER, ["dataset"]).get("dataset")
        if meta and store.count(f"{PREFIX}-readings-*") >= TARGET:
            return datetime.fromisoformat(meta["end"])
        return None
    finally:
        store.close()


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(  # noqa: S310 - loopback, from settings
        f"{url}/_bulk?filter_path=errors",
        data=body,
        headers={"Content-Type": "application/x-ndjson"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310
        if orjson.loads(response.read()).get("errors"):
            raise RuntimeError("bulk load had item errors")


def _rounds(start: float, count: int) -> Iterator[list[bytes]]:
    rates = FaultRates()
    network = build_network(np.random.default_rng([7, 0]), legacy_fraction=rates.wrong_unit)
    stream = ReadingStream(network, rates, 7, INTERVAL, start)
    rounds = -(-count // network.size)
    for first in range(0, rounds, 200):
        times = start + INTERVAL * np.arange(first, min(rounds, first + 200), dtype=float)
        for batch in stream.rounds(times, start + INTERVAL * rounds):
            yield batch.values


def load(settings: Settings) -> datetime:
    store = make_store(settings)
    store.delete_indices(store.list_indices(f"{PREFIX}-*"))
    store.ensure_templates(load_templates(ROOT / "elasticsearch", PREFIX))
    store.close()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rounds = -(-int(TARGET * 1.03) // 196)  # dead letters and duplicates are not indexed
    start = end - timedelta(seconds=INTERVAL * rounds)
    print(
        f"bench-api: loading {TARGET:,} readings {start:%Y-%m-%d %H:%M} .. {end:%H:%M}", flush=True
    )
    queue: Queue[bytes | None] = Queue(maxsize=4)

    def sender() -> None:
        while (body := queue.get()) is not None:
            _post(settings.search_url, body)

    senders = [threading.Thread(target=sender) for _ in range(2)]
    for thread in senders:
        thread.start()
    states: dict[str, Any] = {}
    hourly: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    loaded, pending, started = 0, [], time.monotonic()
    for offset, values in enumerate(_rounds(start.timestamp(), rounds * 196)):
        records = [RawRecord(v, "bench", 0, offset * 1000 + i) for i, v in enumerate(values)]
        result = clean_batch(
            records, states, end, CleaningPolicy(allowed_lateness=timedelta(days=30))
        )
        fresh = [c for c in result.readings if DUPLICATE not in c.flags]
        for clean in fresh:
            if clean.valid:
                r = clean.reading
                hour = int(r.event_time.timestamp() // 3600 * 3600)
                hourly[(r.district, r.metric, hour)].append(r.value)
        pending += fresh
        if len(pending) >= 4000:
            queue.put(bulk_body(reading_actions(PREFIX, pending, "bench", end).actions))
            loaded += len(pending)
            pending = []
            if loaded % 500_000 < 4000:
                rate = loaded / (time.monotonic() - started)
                print(f"  {loaded:,} readings ({rate:,.0f}/s)", flush=True)
    if pending:
        queue.put(bulk_body(reading_actions(PREFIX, pending, "bench", end).actions))
        loaded += len(pending)
    for _ in senders:
        queue.put(None)
    for thread in senders:
        thread.join()
    _load_aggregates(settings, hourly)
    store = make_store(settings)
    from iot_pipeline.storage import IndexAction

    store.bulk_index([IndexAction(MARKER, "dataset", {"end": end.isoformat()})], refresh=True)
    store.refresh(f"{PREFIX}-*")
    store.close()
    print(f"bench-api: {loaded:,} readings in {time.monotonic() - started:.0f}s", flush=True)
    return end


def _load_aggregates(settings: Settings, hourly: dict[tuple[str, str, int], list[float]]) -> None:
    from iot_pipeline.indices import aggregates_index
    from iot_pipeline.storage import IndexAction

    actions = []
    for (district, metric, hour), values in hourly.items():
        start = datetime.fromtimestamp(hour, UTC)
        doc: dict[str, Any] = {
            "scope": "district",
            "key": district,
            "sensor_id": None,
            "district": district,
            "metric": metric,
            "unit": "-",
            "resolution": "1h",
            "window_start": start.isoformat(),
            "window_end": (start + timedelta(hours=1)).isoformat(),
            "count": len(values),
            "min": min(values),
            "max": max(values),
            "mean": statistics.fmean(values),
            "sum": sum(values),
            "std": statistics.pstdev(values),
            "sensors": 2,
            "expected": 240.0,
            "completeness": min(1.0, len(values) / 240),
            "readings": len(values),
            "invalid": 0,
            "quality": {},
            "revision": 1,
            "digest": "bench",
            "pipeline_version": "bench",
        }
        actions.append(
            IndexAction(aggregates_index(PREFIX, "1h", hour), f"{district}:{metric}:{hour}", doc)
        )
    for first in range(0, len(actions), 5000):
        _post(settings.search_url, bulk_body(actions[first : first + 5000]))


async def _measure(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    payload: dict[str, Any] | None,
    total: int,
    clients: int = CLIENTS,
) -> tuple[list[float], int]:
    """Latencies of the requests answered 200, and how many were refused (a search node at
    its memory limit answers 429: the refusal is part of the result, not an accident)."""
    latencies: list[float] = []
    refused: list[str] = []
    remaining = iter(range(total))

    async def worker() -> None:
        for _ in remaining:
            started = time.perf_counter()
            response = await client.request(method, url, json=payload)
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            elif response.status_code in (429, 503):
                refused.append(response.text[:200])
            else:
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")

    await asyncio.gather(*(worker() for _ in range(clients)))
    if refused:
        print(f"  {url}: {len(refused)} of {total} refused, first: {refused[0]}", flush=True)
    return latencies, len(refused)


# What /readings/latest and /sensors sent before the sensor registry (their "direct" side):
# a collapse on sensor_id and a terms + top_hits aggregation over every retained reading.
def _collapse_body(clauses: list[dict[str, Any]], size: int) -> dict[str, Any]:
    return {
        "size": size,
        "query": {"bool": {"filter": clauses}},
        "collapse": {"field": "sensor_id"},
        "sort": [{"event_time": {"order": "desc"}}, {"event_id": {"order": "desc"}}],
        "track_total_hits": False,
    }


def _sensors_aggregation_body(size: int) -> dict[str, Any]:
    latest = {"top_hits": {"size": 1, "sort": [{"event_time": {"order": "desc"}}]}}
    return {
        "size": 0,
        "aggs": {
            "sensors": {
                "terms": {"field": "sensor_id", "size": size, "order": {"_key": "asc"}},
                "aggs": {"latest": latest},
            }
        },
    }


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(settings: Settings, api_url: str, end: datetime, total: int) -> list[tuple[str, ...]]:
    day_start = end - timedelta(hours=24)
    week_start = end - timedelta(days=7)
    # the default window of /readings/latest (1 h), ending where the dataset ends
    hours_back = (datetime.now(UTC) - end).total_seconds() / 3600 + 1
    readings = queries.ReadingFilter(start=day_start, end=end)
    latest_where = queries.ReadingFilter(
        start=datetime.now(UTC) - timedelta(hours=hours_back),
        end=datetime.now(UTC) + timedelta(minutes=5),
        quality="valid",
    ).clauses()
    cases = [
        (
            "/readings (24 h, limit 100)",
            f"/readings?start={day_start.isoformat()}&end={end.isoformat()}&limit=100".replace(
                "+", "%2B"
            ),
            f"{PREFIX}-readings-*",
            queries.readings_body(readings, "desc", 100, None),
        ),
        (
            "/aggregates (1 h, 7 days)",
            f"/aggregates?metric=pm25&resolution=1h&scope=district&key=Anfa"
            f"&start={week_start.isoformat()}&end={end.isoformat()}&limit=200".replace("+", "%2B"),
            f"{PREFIX}-agg-1h-*",
            queries.aggregates_body("pm25", "district", ["Anfa"], week_start, end, 200, None),
        ),
        (
            "/readings/latest",
            f"/readings/latest?within_hours={hours_back:.0f}",
            f"{PREFIX}-readings-*",
            _collapse_body(latest_where, settings.api_max_limit),
        ),
        (
            "/sensors",
            "/sensors",
            f"{PREFIX}-readings-*",
            _sensors_aggregation_body(registry.MAX_SENSORS),
        ),
    ]
    rows: list[tuple[str, ...]] = []
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for name, path, index, body in cases:
            search = f"{settings.search_url}/{index}/_search"
            for warm in (path, None):  # warm both sides once
                await _measure(
                    client,
                    "GET" if warm else "POST",
                    api_url + path if warm else search,
                    None if warm else body,
                    CLIENTS,
                )
            alone = total // 16  # one client: the latency a single user sees
            direct_alone, _ = await _measure(client, "POST", search, body, alone, 1)
            api_alone, _ = await _measure(client, "GET", api_url + path, None, alone, 1)
            direct, direct_refused = await _measure(client, "POST", search, body, total)
            api, api_refused = await _measure(client, "GET", api_url + path, None, total)
            goal = 1.5 * _p(direct, 0.99) + 5
            rows.append(
                (
                    name,
                    f"{_p(direct_alone, 0.5):.1f}",
                    f"{_p(api_alone, 0.5):.1f}",
                    f"{_p(direct, 0.5):.1f}",
                    f"{_p(direct, 0.99):.1f}",
                    str(direct_refused),
                    f"{_p(api, 0.5):.1f}",
                    f"{_p(api, 0.99):.1f}",
                    str(api_refused),
                    f"{goal:.1f}",
                    "yes" if _p(api, 0.99) <= goal and not api_refused else "NO",
                )
            )
            print(f"  {name}: direct p99 {rows[-1][4]} ms, API p99 {rows[-1][7]} ms", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=640, help="per endpoint and side")
    args = parser.parse_args()
    base = Settings()
    settings = base.model_copy(update={"search_index_prefix": PREFIX})
    end = _dataset_end(settings) or load(settings)
    store = make_store(settings)
    built = processing_registry.ensure(store, PREFIX, datetime.now(UTC))  # loaded, not processed
    store.close()
    if built is not None:
        print(f"sensor registry built from the dataset: {built} sensors", flush=True)
    process, url = start_api(settings)
    try:
        rows = asyncio.run(run(settings, url, end, args.requests))
    finally:
        stop_api(process)
    print()
    header = (
        "endpoint",
        "1: direct",
        "1: API",
        "direct p50",
        "direct p99",
        "refused",
        "API p50",
        "API p99",
        "refused",
        "goal p99",
        "met",
    )
    print(f"{header[0]:<30}" + "".join(f"{h:>12}" for h in header[1:]))
    for row in rows:
        print(f"{row[0]:<30}" + "".join(f"{v:>12}" for v in row[1:]))
    print(
        f"(ms; `1:` the median with one client, then {CLIENTS} concurrent clients; "
        f"{args.requests} requests per row and side; percentiles of the answered requests, "
        "`refused`: answered 429/503; the API is one uvicorn process)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
