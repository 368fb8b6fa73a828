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

import json
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


# Replace (or, given "", delete) a waiting plateau only if it is still what this range read:
# its sensor's own range may have stored a newer one meanwhile.
_SWAP = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  if ARGV[3] == '' then return redis.call('HDEL', KEYS[1], ARGV[1]) end
  return redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 0
"""


def _entry(plateau: Plateau, asked: list[str]) -> str:
    return json.dumps({"plateau": plateau.to_json(), "asked": asked})


def _waiting(raw: bytes | str) -> tuple[Plateau, list[str]] | None:
    """A waiting plateau and the partitions that asked for it, or None when the entry cannot
    be read (another version's shape, damage): a plateau that waits is an optimisation of the
    verdict's timing, never worth stopping a range for."""
    try:
        entry = json.loads(raw)
        return Plateau.from_json(entry["plateau"]), [str(a) for a in entry["asked"]]
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def frozen_plateaus(
    store: SearchStore,
    prefix: str,
    kept: list[CleanReading],
    state: redis.Redis | None = None,
    source: str = "",
) -> list[Plateau]:
    """The plateaus these readings extended, and those waiting (in `state`) that these
    readings fall into, that their neighbours judge frozen; the others extended wait.

    `source` names the range's partition: a waiting plateau is judged again by each partition
    until one of its ranges reaches past the plateau's end (by then that partition's
    neighbours of the plateau are all stored), so a plateau costs each partition one search
    at most, however many ranges overlap it."""
    own = open_plateaus(kept)
    mine = {p.sensor_id for p in own}
    stored: dict[str, tuple[bytes | str, Plateau, list[str]]] = {}
    unreadable: list[bytes | str] = []
    if state is not None:
        for sensor, raw in state.hgetall(waiting_key(prefix)).items():
            waiting = _waiting(raw)
            if waiting is None:  # written by another version, or damaged: it waits no more
                unreadable.append(sensor)
                continue
            name = sensor.decode() if isinstance(sensor, bytes) else str(sensor)
            stored[name] = (raw, *waiting)
        if unreadable:
            state.hdel(waiting_key(prefix), *unreadable)
    others = [plateau for sensor, (_, plateau, _) in stored.items() if sensor not in mine]
    again, forget = waiting_for(others, kept)
    again = [p for p in again if source not in stored[p.sensor_id][2]]
    plateaus = own + again
    found: list[Plateau] = []
    for start in range(0, len(plateaus), PLATEAUS_PER_QUERY):
        piece = plateaus[start : start + PLATEAUS_PER_QUERY]
        for plateau, means in zip(piece, _means(store, prefix, piece), strict=True):
            if frozen_among_moving(plateau, means):
                found.append(plateau)
    if state is not None:
        _remember(state, prefix, source, kept, own, again, forget, found, stored)
    return found


def _remember(
    state: redis.Redis,
    prefix: str,
    source: str,
    kept: list[CleanReading],
    own: list[Plateau],
    again: list[Plateau],
    forget: list[Plateau],
    found: list[Plateau],
    stored: dict[str, tuple[bytes | str, Plateau, list[str]]],
) -> None:
    """Store what waits: the range's own plateaus not judged stuck (asked by this partition
    once the range reaches past their end), the waiting ones judged again (likewise); forget
    the stuck ones and the old ones."""
    key = waiting_key(prefix)
    newest = max((c.reading.event_time.timestamp() for c in kept), default=float("-inf"))
    stuck = {p.sensor_id for p in found}
    swap = state.register_script(_SWAP)
    pipe = state.pipeline(transaction=False)
    for plateau in own:
        if plateau.sensor_id in stuck:
            pipe.hdel(key, plateau.sensor_id)
        else:
            asked = [source] if newest > plateau.end else []
            pipe.hset(key, plateau.sensor_id, _entry(plateau, asked))
    for plateau in again:
        raw, _, asked = stored[plateau.sensor_id]
        if plateau.sensor_id in stuck:
            swap(keys=[key], args=[plateau.sensor_id, raw, ""], client=pipe)
        elif newest > plateau.end:
            entry = _entry(plateau, [*asked, source])
            swap(keys=[key], args=[plateau.sensor_id, raw, entry], client=pipe)
    for plateau in forget:
        raw = stored[plateau.sensor_id][0]
        swap(keys=[key], args=[plateau.sensor_id, raw, ""], client=pipe)
    pipe.execute()
