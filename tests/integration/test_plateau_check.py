"""Plateaus judged by their neighbours on the real stack (cleaning.plateau_rule,
processing.plateau_check): an hourly station that holds one value while three stations within
a few hundred metres warm by a degree an hour is stuck, from the plateau's first reading, out
of the aggregates; the same plateau among neighbours that hold theirs is calm weather, and
so is the same plateau of a station without neighbours. The stations' sensors are spread over
the topic's partitions, and each partition is processed in turn: a plateau's neighbours are
stored after it, and the plateau waits for them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from iot_pipeline.indices import aggregates_pattern, readings_pattern
from iot_pipeline.processing.plateau_check import waiting_key
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.isolation import own_pipeline
from support.kafka_io import produce_readings
from support.processing import process_pending
from support.readings import sample_reading

HOUR = timedelta(hours=1)
# 18 hourly readings ending an hour ago: 12 that move, then 6 of one value
FIRST = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 18 * HOUR
LEARNED = [20.13, 20.61, 21.07, 21.58, 22.04, 22.49, 22.97, 23.44, 23.92, 24.38, 24.87, 25.31]
FROZEN = 25.78
PLACES = {"moving": (33.58, -7.62), "calm": (33.30, -7.20), "alone": (33.00, -6.50)}


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "plateau") as own:
        yield own


def _station(name: str, place: str, n: int, values: list[float]) -> list[dict[str, Any]]:
    lat, lon = PLACES[place]
    return [
        sample_reading(
            event_id=f"{name}-{i}",
            sensor_id=f"{name}-temperature",
            station_id=name,
            district=place,
            value=value,
            seq=i,
            lat=lat + 0.004 * n,
            lon=lon,
            event_time=(FIRST + i * HOUR).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        )
        for i, value in enumerate(values)
    ]


def _network() -> list[dict[str, Any]]:
    held = [*LEARNED, *[FROZEN] * 6]
    readings = []
    for place in PLACES:
        readings += _station(f"plateau-{place}-00", place, 0, held)
    for n in (1, 2, 3):
        # warming a degree an hour while the frozen one holds...
        warming = [*LEARNED, *[round(FROZEN + 0.2 * n + 1.0 * i, 2) for i in range(6)]]
        readings += _station(f"plateau-moving-{n:02d}", "moving", n, warming)
        # ...or holding their own values within a tenth of a degree: a calm night
        calm = [*LEARNED, *[round(FROZEN + 0.2 * n + 0.03 * (i % 2), 2) for i in range(6)]]
        readings += _station(f"plateau-calm-{n:02d}", "calm", n, calm)
    return readings


def test_a_plateau_is_stuck_when_the_neighbours_move_and_calm_when_they_do_not(
    settings: Settings,
) -> None:
    # an entry another version wrote (or damage) waits no more, and stops nothing
    with redis.Redis.from_url(settings.redis_url) as state:
        state.hset(waiting_key(settings.search_index_prefix), "plateau-old-temperature", "[1, 2]")
    produce_readings(settings, _network())
    process_pending(settings, "plateau")
    store = make_store(settings)
    try:
        pattern = readings_pattern(settings.search_index_prefix)
        store.refresh(pattern)
        hits = store.search(
            pattern,
            {"size": 1000, "query": {"prefix": {"sensor_id": "plateau-"}}},
        )["hits"]["hits"]
        verdicts: dict[str, list[str]] = {}
        for hit in sorted(hits, key=lambda h: h["_source"]["event_time"]):
            doc = hit["_source"]
            verdicts.setdefault(doc["station_id"], []).append(doc["qc"])
        assert len(hits) == 3 * 18 + 6 * 18
        # the frozen station among moving neighbours: its plateau, from its first value
        assert verdicts["plateau-moving-00"][12:] == ["Q"] * 6
        assert set(verdicts["plateau-moving-00"][:12]) <= {"S", "C"}
        # the same plateau among calm neighbours, or alone: weather
        for station, qcs in verdicts.items():
            if station != "plateau-moving-00":
                assert set(qcs) <= {"S", "C"}, (station, qcs)
        # the hours of the plateau count no stuck reading
        windows = aggregates_pattern(settings.search_index_prefix, "1h")
        store.refresh(windows)
        plateau_hours = store.search(
            windows,
            {
                "size": 10,
                "query": {
                    "bool": {
                        "filter": [
                            {"term": {"scope": "sensor"}},
                            {"term": {"key": "plateau-moving-00-temperature"}},
                            {"range": {"window_start": {"gte": (FIRST + 12 * HOUR).isoformat()}}},
                        ]
                    }
                },
            },
        )["hits"]["hits"]
    finally:
        store.close()
    assert len(plateau_hours) == 6
    assert all(h["_source"]["count"] == 0 for h in plateau_hours), plateau_hours
    # the calm plateaus wait for neighbours stored later; the stuck one waits no more
    state = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        waiting = set(state.hkeys(waiting_key(settings.search_index_prefix)))
    finally:
        state.close()
    assert waiting == {"plateau-calm-00-temperature", "plateau-alone-00-temperature"}
