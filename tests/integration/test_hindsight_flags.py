"""Flags found in hindsight reach readings stored by earlier batches: the start of a run of
identical values judged stuck later, and an hourly sensor's spike judged when the next
reading came back. The stored readings change verdict, the windows they fall into are
recomputed (one revision up), and repeating a batch changes nothing."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from iot_pipeline.cleaning.state import STUCK_REPEATS
from iot_pipeline.indices import readings_pattern
from iot_pipeline.settings import Settings
from iot_pipeline.storage import SearchStore

from support.aggregates import window
from support.isolation import own_pipeline
from support.kafka_io import produce_readings
from support.processing import process_pending
from support.readings import sample_reading

# whole hours, yesterday: every reading is in the past, and in the kept days
START = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "hindsight") as own:
        yield own


def _readings(sensor: str, values: list[float], every: timedelta) -> list[dict[str, Any]]:
    station = sensor.rsplit("-", 1)[0]
    return [
        sample_reading(
            event_id=f"{sensor}-{n}",
            sensor_id=sensor,
            station_id=station,
            value=value,
            seq=n,
            event_time=(START + every * n).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        )
        for n, value in enumerate(values)
    ]


def _stored(store: SearchStore, settings: Settings, sensor: str) -> list[dict[str, Any]]:
    pattern = readings_pattern(settings.search_index_prefix)
    store.refresh(pattern)
    body = {"size": 1000, "query": {"term": {"sensor_id": sensor}}, "sort": ["event_time"]}
    return [h["_source"] for h in store.search(pattern, body)["hits"]["hits"]]


def test_a_run_judged_stuck_in_a_later_batch_flags_its_stored_start(
    settings: Settings, store: SearchStore
) -> None:
    sensor = "casa-hindsight-01-temperature"
    rng = random.Random(3)
    learned = [round(21.0 + rng.uniform(-0.5, 0.5), 2) for _ in range(12)]
    first = [*learned, 21.37, 21.37]  # the run begins: two equal values are no fault yet
    minute = timedelta(minutes=1)
    produce_readings(settings, _readings(sensor, first, minute))
    process_pending(settings, "hindsight-1")
    before = window(store, settings, "1h", "sensor", sensor, START)
    assert before["count"] == len(first)
    assert all(doc["valid"] for doc in _stored(store, settings, sensor))

    later = _readings(sensor, [*first, *[21.37] * STUCK_REPEATS, 21.9], minute)[len(first) :]
    produce_readings(settings, later)
    process_pending(settings, "hindsight-2")
    docs = _stored(store, settings, sensor)
    stuck = [n for n, doc in enumerate(docs) if "stuck" in doc["flags"]]
    assert stuck == list(range(len(learned), len(learned) + 2 + STUCK_REPEATS))
    assert all(docs[n]["qc"] == "Q" and not docs[n]["valid"] for n in stuck)
    after = window(store, settings, "1h", "sensor", sensor, START)
    assert after["count"] == len(learned) + 1  # the run left the window, 21.9 joined it
    assert after["revision"] == before["revision"] + 1

    # the same batch again (a replay of the range) finds the run flagged already
    produce_readings(settings, later)
    process_pending(settings, "hindsight-3")
    assert _stored(store, settings, sensor) == docs
    assert window(store, settings, "1h", "sensor", sensor, START)["revision"] == after["revision"]


def test_an_hourly_sensors_spike_is_flagged_when_the_next_reading_comes_back(
    settings: Settings, store: SearchStore
) -> None:
    sensor = "casa-hindsight-02-temperature"
    values = [12.0, 13.1, 14.0, 15.2, 29.0, 16.1]
    hour = timedelta(hours=1)
    readings = _readings(sensor, values, hour)
    produce_readings(settings, readings[:5])  # the spike is the newest reading of the batch
    process_pending(settings, "hindsight-4")
    assert all(doc["valid"] for doc in _stored(store, settings, sensor))
    assert window(store, settings, "1h", "sensor", sensor, START + 4 * hour)["count"] == 1

    produce_readings(settings, readings[5:])
    process_pending(settings, "hindsight-5")
    docs = _stored(store, settings, sensor)
    assert [doc["flags"] for doc in docs] == [[], [], [], [], ["spike"], []]
    assert docs[4]["qc"] == "Q"
    assert window(store, settings, "1h", "sensor", sensor, START + 4 * hour)["count"] == 0


def test_a_network_wide_freeze_is_flagged_in_one_batch(
    settings: Settings, store: SearchStore
) -> None:
    # a gateway repeating every sensor's last value: 1,200 runs judged stuck in one range,
    # more than one query of the engine can name
    minute = timedelta(minutes=1)
    readings = []
    for n in range(1200):
        # a sensor moving 41 resolution steps a minute, never repeating itself by chance
        learned = [round(20.0 + 0.41 * k + 0.01 * (n % 7), 2) for k in range(8)]
        frozen = [learned[-1]] * STUCK_REPEATS
        readings += _readings(f"casa-freeze-{n:04d}-temperature", [*learned, *frozen], minute)
    produce_readings(settings, readings)
    process_pending(settings, "hindsight-6")
    pattern = readings_pattern(settings.search_index_prefix)
    store.refresh(pattern)
    body = {
        "size": 0,
        "track_total_hits": True,
        "query": {
            "bool": {
                "filter": [
                    {"prefix": {"sensor_id": "casa-freeze-"}},
                    {"term": {"flags": "stuck"}},
                ]
            }
        },
    }
    # each run from its first value, the last learned one: 1 + STUCK_REPEATS per sensor
    stuck = store.search(pattern, body)["hits"]["total"]["value"]
    assert stuck == 1200 * (1 + STUCK_REPEATS)
