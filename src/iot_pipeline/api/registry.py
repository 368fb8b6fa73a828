"""The API's reads of the sensor registry (processing.registry writes it): sensors, the
latest reading of each, and the last batch, each in O(sensors) whatever the readings hold;
and of what operators declared of their sensors (contracts.metadata), which lives in an
index of its own so that a sensor declared before its first reading is no registry document
(every reader here counts on a registered sensor's `last` and `last_seen`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from iot_pipeline.api import queries
from iot_pipeline.api.models.pipeline import LastBatch
from iot_pipeline.api.models.sensors import Sensor, SensorMetadata
from iot_pipeline.contracts.metadata import metadata_pattern
from iot_pipeline.contracts.readings import Reading
from iot_pipeline.errors import PermanentStoreError
from iot_pipeline.indices import readings_pattern, sensors_index
from iot_pipeline.settings import Settings
from iot_pipeline.storage import AsyncSearchStore
from iot_pipeline.storage.base import is_missing_index

MAX_SENSORS = 10_000  # the registry's answers are at most this long


async def _search(store: AsyncSearchStore, settings: Settings, body: dict[str, Any]) -> list[Any]:
    """Registry hits; none before the first range created the registry."""
    try:
        result = await store.search(sensors_index(settings.search_index_prefix), body)
    except PermanentStoreError as exc:
        if is_missing_index(exc):
            return []
        raise
    hits: list[Any] = result["hits"]["hits"]
    return hits


def _online_clause(settings: Settings, now: datetime) -> dict[str, Any]:
    since = now - timedelta(seconds=settings.sensor_offline_after_seconds)
    return {"range": {"last_seen_ms": {"gte": queries.epoch_millis(since)}}}


async def sensors(
    store: AsyncSearchStore,
    settings: Settings,
    *,
    sensor_id: list[str] | None = None,
    district: list[str] | None = None,
    metric: list[str] | None = None,
    status: str | None = None,
) -> list[Sensor]:
    """Registered sensors by id, with their status now."""
    now = datetime.now(UTC)
    query: dict[str, Any] = {
        "filter": [
            *queries.terms("sensor_id", sensor_id),
            *queries.terms("district", district),
            *queries.terms("metric", metric),
        ]
    }
    if status == "online":
        query["filter"].append(_online_clause(settings, now))
    elif status == "offline":
        query["must_not"] = [_online_clause(settings, now)]
    body = {
        "size": MAX_SENSORS,
        "query": {"bool": query},
        "sort": [{"sensor_id": "asc"}],
        "track_total_hits": False,
    }
    docs = [h["_source"] for h in await _search(store, settings, body)]
    declared = await declarations(store, settings, [doc["sensor_id"] for doc in docs])
    return [_sensor(doc, now, settings, declared.get(doc["sensor_id"])) for doc in docs]


async def declarations(
    store: AsyncSearchStore, settings: Settings, sensor_ids: list[str]
) -> dict[str, SensorMetadata]:
    """The declarations of these sensors, by id (one search; none for no sensor)."""
    if not sensor_ids:
        return {}
    body = {
        "size": len(sensor_ids),
        "query": {"bool": {"filter": [{"terms": {"sensor_id": sensor_ids}}]}},
        "track_total_hits": False,
    }
    found = await store.search(metadata_pattern(settings.search_index_prefix), body)
    return {
        hit["_source"]["sensor_id"]: SensorMetadata.model_validate(hit["_source"])
        for hit in found["hits"]["hits"]
    }


async def metric_of(store: AsyncSearchStore, settings: Settings, sensor_id: str) -> str | None:
    """The metric a registered sensor reports; None before its first reading."""
    body = {
        "size": 1,
        "_source": ["metric"],
        "query": {"ids": {"values": [sensor_id]}},
        "track_total_hits": False,
    }
    hits = await _search(store, settings, body)
    return str(hits[0]["_source"]["metric"]) if hits else None


def _sensor(
    doc: dict[str, Any], now: datetime, settings: Settings, declared: SensorMetadata | None
) -> Sensor:
    last_seen = datetime.fromisoformat(doc["last_seen"])
    online = (now - last_seen).total_seconds() <= settings.sensor_offline_after_seconds
    return Sensor(
        sensor_id=doc["sensor_id"],
        station_id=doc["station_id"],
        district=doc["district"],
        metric=doc["metric"],
        unit=doc["unit"],
        location=doc["location"],
        firmware=doc["firmware"],
        last_seen=last_seen,
        last_value=doc["last"]["value"],
        status="online" if online else "offline",
        interval_s=doc.get("interval_s"),
        resolution=doc.get("resolution"),
        declared=declared,
    )


async def latest_readings(
    store: AsyncSearchStore,
    settings: Settings,
    *,
    district: list[str] | None,
    metric: list[str] | None,
    include_invalid: bool,
    within: timedelta,
) -> list[Reading]:
    """The newest reading (or newest valid one) of every sensor heard from `within`: the
    registry names them, one ids query fetches them as stored now (a verdict changed since,
    e.g. by the cross-metric rule, is what counts)."""
    now = datetime.now(UTC)
    pointer = "last" if include_invalid else "last_valid"
    body = {
        "size": MAX_SENSORS,
        "_source": ["sensor_id", f"{pointer}.id", f"{pointer}.index", f"{pointer}.ms"],
        "query": {
            "bool": {
                "filter": [
                    *queries.terms("district", district),
                    *queries.terms("metric", metric),
                    {"range": {f"{pointer}.ms": {"gte": queries.epoch_millis(now - within)}}},
                ]
            }
        },
        "track_total_hits": False,
    }
    registered = [h["_source"] for h in await _search(store, settings, body)]
    if not registered:
        return []
    pointers = [r[pointer] for r in registered]
    ids = [p["id"] for p in pointers]
    # only the daily indices that hold them (a wildcard each: one deleted since is no error)
    days = ",".join(sorted({f"{p['index']}*" for p in pointers}))
    where = queries.ReadingFilter(quality="all" if include_invalid else "valid")
    found = await store.search(
        days,
        {
            "size": len(ids),
            "query": {"bool": {"filter": [{"ids": {"values": ids}}, *where.clauses()]}},
            "sort": [{"event_time": "desc"}, {"event_id": "desc"}],
            "track_total_hits": False,
        },
    )
    hits: list[dict[str, Any]] = found["hits"]["hits"]
    if not include_invalid:
        # a later rule (buddy check, hindsight, cross-metric) may have invalidated the
        # reading the registry points at: such a sensor's latest is its newest valid one
        # before it, not nothing
        served = {h["_source"]["sensor_id"] for h in hits}
        lost = [r for r in registered if r["sensor_id"] not in served]
        if lost:
            hits += await _newest_valid_before(store, settings, lost, now - within, where)
            hits.sort(key=lambda h: (h["_source"]["event_time"], h["_source"]["event_id"]))
            hits.reverse()
    return [Reading.model_validate(h["_source"]) for h in hits]


# Sensors per query of the fallback: each is a term and a time range (up to four of the
# engine's 1,024 clauses).
_LOST_PER_QUERY = 200


async def _newest_valid_before(
    store: AsyncSearchStore,
    settings: Settings,
    lost: list[dict[str, Any]],
    since: datetime,
    where: queries.ReadingFilter,
) -> list[dict[str, Any]]:
    """Per sensor, its newest valid reading from `since` up to the one its registry entry
    points at (which is no longer valid), one collapsed search per chunk of sensors."""
    hits: list[dict[str, Any]] = []
    for start in range(0, len(lost), _LOST_PER_QUERY):
        chunk = lost[start : start + _LOST_PER_QUERY]
        per_sensor = [
            {
                "bool": {
                    "filter": [
                        {"term": {"sensor_id": r["sensor_id"]}},
                        {
                            "range": {
                                "event_time": {
                                    "gte": queries.epoch_millis(since),
                                    "lte": r["last_valid"]["ms"],
                                    "format": "epoch_millis",
                                }
                            }
                        },
                    ]
                }
            }
            for r in chunk
        ]
        body = {
            "size": len(chunk),
            "query": {
                "bool": {
                    "filter": where.clauses(),
                    "should": per_sensor,
                    "minimum_should_match": 1,
                }
            },
            "collapse": {"field": "sensor_id"},
            "sort": [{"event_time": "desc"}, {"event_id": "desc"}],
            "track_total_hits": False,
        }
        try:
            found = await store.search(readings_pattern(settings.search_index_prefix), body)
        except PermanentStoreError as exc:
            if is_missing_index(exc):
                continue
            raise
        hits += found["hits"]["hits"]
    return hits


async def last_batch(store: AsyncSearchStore, settings: Settings) -> LastBatch | None:
    """The batch that last stored readings (the registry's newest ingest time)."""
    body = {
        "size": 1,
        "_source": ["batch_id", "ingest_time"],
        "sort": [{"ingest_ms": "desc"}],
        "track_total_hits": False,
    }
    hits = await _search(store, settings, body)
    if not hits:
        return None
    doc = hits[0]["_source"]
    return LastBatch(
        batch_id=doc["batch_id"], ingest_time=datetime.fromisoformat(doc["ingest_time"])
    )
