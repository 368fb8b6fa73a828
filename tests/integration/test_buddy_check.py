"""The buddy check on the real stack: a station far from what its neighbours report in the
same slot is questioned (flag `spatial`, QC `Q`, out of the aggregates), whichever order the
stations' readings arrive in; a station with no neighbours is not judged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from iot_pipeline.cleaning.buddy_rule import BUDDY_SLOT
from iot_pipeline.indices import aggregates_pattern, readings_pattern
from iot_pipeline.settings import Settings
from iot_pipeline.storage import SearchStore

from support.isolation import own_pipeline
from support.kafka_io import produce_readings
from support.processing import process_pending
from support.readings import sample_reading

# the slot before the current one, so that every reading of it is in the past
SLOT = (int(datetime.now(UTC).timestamp() // BUDDY_SLOT) - 1) * BUDDY_SLOT


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "buddy") as own:
        yield own


def _station(n: int, value: float, lat: float = 33.58, lon: float = -7.62) -> list[dict[str, Any]]:
    """Three readings of one station's temperature sensor in the slot."""
    station = f"casa-buddy-{n:02d}"
    return [
        sample_reading(
            event_id=f"{station}-{i}",
            sensor_id=f"{station}-temperature",
            station_id=station,
            district="Anfa",
            value=value + 0.1 * i,
            seq=i,
            lat=lat + 0.004 * n,
            lon=lon,
            event_time=datetime.fromtimestamp(SLOT + 60 * (i + 1), UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.000Z"
            ),
        )
        for i in range(3)
    ]


def _verdicts(store: SearchStore, settings: Settings) -> dict[str, tuple[str, bool, list[str]]]:
    """station -> (QC verdicts, valid, flags) of its readings; valid and flags must agree (a
    sensor's first reading is `C`, the next ones `S`: they had a history to be judged by)."""
    pattern = readings_pattern(settings.search_index_prefix)
    store.refresh(pattern)
    hits = store.search(pattern, {"size": 1000, "query": {"match_all": {}}})["hits"]["hits"]
    seen: dict[str, set[tuple[bool, tuple[str, ...]]]] = {}
    verdicts: dict[str, set[str]] = {}
    for hit in hits:
        doc = hit["_source"]
        seen.setdefault(doc["station_id"], set()).add((doc["valid"], tuple(doc["flags"])))
        verdicts.setdefault(doc["station_id"], set()).add(doc["qc"])
    assert all(len(v) == 1 for v in seen.values()), seen
    return {
        station: ("".join(sorted(verdicts[station])), valid, list(flags))
        for station, ((valid, flags),) in seen.items()
    }


def _district_count(store: SearchStore, settings: Settings) -> int:
    pattern = aggregates_pattern(settings.search_index_prefix, "1h")
    store.refresh(pattern)
    hour = int(SLOT // 3600 * 3600) * 1000
    body = {
        "size": 1,
        "query": {
            "bool": {
                "filter": [
                    {"term": {"scope": "district"}},
                    {"term": {"key": "Anfa"}},
                    {"term": {"metric": "temperature"}},
                    {
                        "range": {
                            "window_start": {"gte": hour, "lte": hour, "format": "epoch_millis"}
                        }
                    },
                ]
            }
        },
    }
    (hit,) = store.search(pattern, body)["hits"]["hits"]
    return int(hit["_source"]["count"])


def test_the_outlier_is_questioned_whichever_order_its_neighbours_arrive_in(
    settings: Settings, store: SearchStore
) -> None:
    # first the outlier and two neighbours: too few buddies, no verdict yet
    produce_readings(settings, [*_station(0, 20.0), *_station(1, 20.3), *_station(5, 33.0)])
    process_pending(settings, "buddy-1")
    first = _verdicts(store, settings)
    assert {s: v[:2] for s, v in first.items()} == {
        "casa-buddy-00": ("CS", True),
        "casa-buddy-01": ("CS", True),
        "casa-buddy-05": ("CS", True),
    }
    # two more neighbours in a later batch: the slot is judged again, the outlier questioned
    produce_readings(settings, [*_station(2, 19.8), *_station(3, 20.1)])
    process_pending(settings, "buddy-2")
    after = _verdicts(store, settings)
    assert after["casa-buddy-05"] == ("Q", False, ["spatial"])
    assert {s for s, v in after.items() if v[1]} == {f"casa-buddy-0{n}" for n in range(4)}
    assert _district_count(store, settings) == 4 * 3  # the outlier left the aggregates


def test_a_station_without_neighbours_is_not_judged(settings: Settings, store: SearchStore) -> None:
    # about 50 km away (Mohammedia-Rabat road): no station of the network within the radius
    produce_readings(settings, _station(9, 35.0, lat=33.98, lon=-7.20))
    process_pending(settings, "buddy-3")
    assert _verdicts(store, settings)["casa-buddy-09"][1] is True


def test_weeks_of_buffered_readings_in_one_batch_are_judged(
    settings: Settings, store: SearchStore
) -> None:
    # a station back after 15 days offline uploads its buffer, one reading every 20 minutes:
    # 1,100 separate slots, more than one query of the engine can name
    station = "casa-buddy-20"
    end = (SLOT // 1200) * 1200
    readings = [
        sample_reading(
            event_id=f"{station}-buffer-{n}",
            sensor_id=f"{station}-temperature",
            station_id=station,
            district="Anfa",
            value=round(19.0 + 0.05 * (n % 40), 2),
            seq=n,
            event_time=datetime.fromtimestamp(end - 1200 * n, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.000Z"
            ),
        )
        for n in range(1100)
    ]
    produce_readings(settings, readings)
    process_pending(settings, "buddy-4")
    pattern = readings_pattern(settings.search_index_prefix)
    store.refresh(pattern)
    body = {"query": {"term": {"station_id": station}}, "size": 0, "track_total_hits": True}
    assert store.search(pattern, body)["hits"]["total"]["value"] == 1100
