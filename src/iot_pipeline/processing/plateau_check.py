"""Plateaus judged by their neighbours (cleaning.plateau_rule) on stored readings.

After a range's readings are searchable, each plateau the range extended (a run of identical
values long enough, not stuck yet) is put to the neighbouring stations of its metric: one
search per PLATEAUS_PER_QUERY plateaus, a filter per plateau (its metric, its span, within
BUDDY_RADIUS_KM of it, another station, no rule invalidated the reading) and, per neighbouring
sensor, its first and last value in the span. A plateau judged stuck becomes a flag found in
hindsight (processing.hindsight) on its readings, and its windows are recomputed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from iot_pipeline.cleaning import CleanReading, Hindsight
from iot_pipeline.cleaning.buddy_rule import BUDDY_RADIUS_KM
from iot_pipeline.cleaning.plateau_rule import Plateau, frozen_among_moving, open_plateaus
from iot_pipeline.indices import readings_pattern
from iot_pipeline.storage import SearchStore
from iot_pipeline.vocabulary import INVALIDATING, SPATIAL

PLATEAUS_PER_QUERY = 50
NEIGHBOURS = 200  # neighbouring sensors per plateau, far more than a city's within 10 km
_DISTRUSTED = sorted(INVALIDATING - {SPATIAL})


def _neighbours_of(plateau: Plateau) -> dict[str, Any]:
    return {
        "bool": {
            "filter": [
                {"term": {"metric": plateau.metric}},
                {
                    "range": {
                        "event_time": {
                            "gte": int(plateau.start * 1000),
                            "lte": int(plateau.end * 1000),
                            "format": "epoch_millis",
                        }
                    }
                },
                {
                    "geo_distance": {
                        "distance": f"{BUDDY_RADIUS_KM}km",
                        "location": {"lat": plateau.lat, "lon": plateau.lon},
                    }
                },
            ],
            "must_not": [
                {"term": {"station_id": plateau.station_id}},
                {"terms": {"flags": _DISTRUSTED}},
            ],
        }
    }


def _edge(order: str) -> dict[str, Any]:
    return {"top_hits": {"size": 1, "sort": [{"event_time": order}], "_source": ["value"]}}


def _changes(store: SearchStore, prefix: str, piece: list[Plateau]) -> Iterator[list[float]]:
    """Per plateau of `piece`, each neighbouring sensor's last value in its span minus its
    first (sensors with two readings or more)."""
    body = {
        "size": 0,
        "aggs": {
            "p": {
                "filters": {"filters": {str(n): _neighbours_of(p) for n, p in enumerate(piece)}},
                "aggs": {
                    "s": {
                        "terms": {"field": "sensor_id", "size": NEIGHBOURS, "min_doc_count": 2},
                        "aggs": {"first": _edge("asc"), "last": _edge("desc")},
                    }
                },
            }
        },
    }
    buckets = store.search(readings_pattern(prefix), body)["aggregations"]["p"]["buckets"]
    for n in range(len(piece)):
        out = []
        for sensor in buckets[str(n)]["s"]["buckets"]:
            first = sensor["first"]["hits"]["hits"][0]["_source"]["value"]
            last = sensor["last"]["hits"]["hits"][0]["_source"]["value"]
            out.append(float(last) - float(first))
        yield out


def plateau_hindsights(
    store: SearchStore, prefix: str, kept: list[CleanReading]
) -> list[tuple[str, Hindsight]]:
    """(sensor, stuck flag over its plateau) for the plateaus these readings extended that
    their neighbours judge frozen."""
    plateaus = open_plateaus(kept)
    found: list[tuple[str, Hindsight]] = []
    for start in range(0, len(plateaus), PLATEAUS_PER_QUERY):
        piece = plateaus[start : start + PLATEAUS_PER_QUERY]
        for plateau, changes in zip(piece, _changes(store, prefix, piece), strict=True):
            if frozen_among_moving(plateau, changes):
                found.append((plateau.sensor_id, plateau.stuck()))
    return found
