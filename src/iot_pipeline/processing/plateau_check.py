"""Plateaus judged by their neighbours (cleaning.plateau_rule) on stored readings.

After a range's readings are searchable, each plateau the range extended (a run of identical
values long enough, not stuck yet) is put to the neighbouring stations of its metric: one
search per PLATEAUS_PER_QUERY plateaus, a filter per plateau (its metric, its span, within
BUDDY_RADIUS_KM of it, another station, no rule invalidated the reading) and, per neighbouring
sensor, its mean per bucket of the span (Plateau.bucket: a date histogram of the plateau's
bucket width, aligned on its first reading). A plateau judged stuck becomes a flag found in
hindsight (processing.hindsight) on its readings, and its windows are recomputed.

A plateau not judged stuck waits in Redis (`<prefix>:plateaus`, the newest per sensor) for
neighbours that are stored later (their partition runs behind): each range judges again the
waiting plateaus its readings fall into (cleaning.plateau_rule.waiting_for), whichever
partition they belong to, and forgets those judged stuck or too old. So the last range to
store a plateau's neighbours judges it, as the buddy check's last range of a slot does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from iot_pipeline.cleaning import CleanReading
from iot_pipeline.cleaning.buddy_rule import BUDDY_RADIUS_KM
from iot_pipeline.cleaning.plateau_rule import (
    Plateau,
    frozen_among_moving,
    open_plateaus,
    waiting_for,
)
from iot_pipeline.indices import readings_pattern
from iot_pipeline.storage import SearchStore
from iot_pipeline.vocabulary import INVALIDATING, SPATIAL

# At most 10 plateaus x 100 neighbours x 25 buckets per search: within the engine's limit of
# 65,536 buckets per response.
PLATEAUS_PER_QUERY = 10
NEIGHBOURS = 100  # neighbouring sensors per plateau, more than a city has within 10 km
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


def _buckets(plateau: Plateau) -> dict[str, Any]:
    """A date histogram with the plateau's buckets: its width, the first centred on its first
    reading."""
    width = max(1, round(plateau.width * 1000))
    offset = round(plateau.start * 1000 - width / 2) % width
    return {
        "date_histogram": {
            "field": "event_time",
            "fixed_interval": f"{width}ms",
            "offset": f"+{offset}ms",
            "min_doc_count": 1,
        },
        "aggs": {"mean": {"avg": {"field": "value"}}},
    }


def _means(
    store: SearchStore, prefix: str, piece: list[Plateau]
) -> Iterator[dict[str, dict[int, float]]]:
    """Per plateau of `piece`, each neighbouring sensor's mean per bucket of its span."""
    # each plateau has its own span and buckets: one filter aggregation per plateau
    body = {
        "size": 0,
        "aggs": {
            str(n): {
                "filter": _neighbours_of(p),
                "aggs": {
                    "s": {
                        "terms": {"field": "sensor_id", "size": NEIGHBOURS},
                        "aggs": {"t": _buckets(p)},
                    }
                },
            }
            for n, p in enumerate(piece)
        },
    }
    found = store.search(readings_pattern(prefix), body)["aggregations"]
    for n in range(len(piece)):
        means: dict[str, dict[int, float]] = {}
        for sensor in found[str(n)]["s"]["buckets"]:
            buckets = {
                int(b["key"]): float(b["mean"]["value"])
                for b in sensor["t"]["buckets"]
                if b["mean"]["value"] is not None
            }
            means[str(sensor["key"])] = buckets
        yield means


def waiting_key(prefix: str) -> str:
    return f"{prefix}:plateaus"


def frozen_plateaus(
    store: SearchStore, prefix: str, kept: list[CleanReading], state: redis.Redis | None = None
) -> list[Plateau]:
    """The plateaus these readings extended, and those waiting (in `state`) that these
    readings fall into, that their neighbours judge frozen; the others extended wait."""
    own = open_plateaus(kept)
    waiting: list[Plateau] = []
    if state is not None:
        stored = state.hgetall(waiting_key(prefix))
        waiting = [Plateau.from_json(text) for text in stored.values()]
    mine = {p.sensor_id for p in own}
    again, forget = waiting_for([p for p in waiting if p.sensor_id not in mine], kept)
    plateaus = own + again
    found: list[Plateau] = []
    for start in range(0, len(plateaus), PLATEAUS_PER_QUERY):
        piece = plateaus[start : start + PLATEAUS_PER_QUERY]
        for plateau, means in zip(piece, _means(store, prefix, piece), strict=True):
            if frozen_among_moving(plateau, means):
                found.append(plateau)
    if state is not None:
        stuck = {p.sensor_id for p in found}
        gone = {p.sensor_id for p in forget} | (stuck - mine)
        pipe = state.pipeline(transaction=False)
        for plateau in own:
            if plateau.sensor_id in stuck:
                pipe.hdel(waiting_key(prefix), plateau.sensor_id)
            else:
                pipe.hset(waiting_key(prefix), plateau.sensor_id, plateau.to_json())
        if gone:
            pipe.hdel(waiting_key(prefix), *sorted(gone))
        pipe.execute()
    return found
