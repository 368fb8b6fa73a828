"""Search bodies of the API, built from validated parameters only.

User input reaches the engine as term and range values inside structured queries, never
spliced into a query string. Pure functions: unit-tested without an engine.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from iot_pipeline.errors import DataError

Quality = Literal["all", "valid", "invalid", "flagged"]
Order = Literal["asc", "desc"]


class BadCursor(DataError, ValueError):
    """A pagination cursor that this API did not issue (or for another sort)."""


def _fits(value: object) -> bool:
    """A sort value the engine can take back: a signed 64-bit number, a short string."""
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return not isinstance(value, str) or len(value) <= 1024


def encode_cursor(sort_values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(sort_values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    """The search_after values of a cursor; their types must match the sort (`shape`)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("cursor is not one this API issued") from exc
    if (
        not isinstance(values, list)
        or len(values) != len(shape)
        or not all(
            isinstance(v, t) and not isinstance(v, bool) for v, t in zip(values, shape, strict=True)
        )
        or not all(_fits(v) for v in values)
    ):
        raise BadCursor("cursor is not one this API issued for this listing")
    return values


def epoch_millis(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def time_range(field: str, start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:
    bounds: dict[str, Any] = {}
    if start is not None:
        bounds["gte"] = epoch_millis(start)
    if end is not None:
        bounds["lt"] = epoch_millis(end)
    if not bounds:
        return []
    return [{"range": {field: {**bounds, "format": "epoch_millis"}}}]


def terms(field: str, values: list[str] | None) -> list[dict[str, Any]]:
    return [{"terms": {field: sorted(set(values))}}] if values else []


def quality_filter(quality: Quality, flag: str | None) -> list[dict[str, Any]]:
    clauses: list[dict[str, Any]] = []
    if quality == "valid":
        clauses.append({"term": {"valid": True}})
    elif quality == "invalid":
        clauses.append({"term": {"valid": False}})
    elif quality == "flagged":
        clauses.append({"exists": {"field": "flags"}})
    if flag:
        clauses.append({"term": {"flags": flag}})
    return clauses


@dataclass(frozen=True)
class ReadingFilter:
    sensor_id: list[str] | None = None
    district: list[str] | None = None
    metric: list[str] | None = None
    start: datetime | None = None
    end: datetime | None = None
    quality: Quality = "all"
    flag: str | None = None
    qc: list[str] | None = None

    def clauses(self) -> list[dict[str, Any]]:
        return [
            *terms("sensor_id", self.sensor_id),
            *terms("district", self.district),
            *terms("metric", self.metric),
            *time_range("event_time", self.start, self.end),
            *quality_filter(self.quality, self.flag),
            *terms("qc", self.qc),
        ]


READING_SORT_SHAPE = (int, str)


def readings_body(
    where: ReadingFilter, order: Order, limit: int, after: list[Any] | None
) -> dict[str, Any]:
    """A page of readings sorted by (event_time, event_id): a total order, so `search_after`
    neither skips nor repeats while new readings arrive."""
    body: dict[str, Any] = {
        "size": limit,
        "query": {"bool": {"filter": where.clauses()}},
        "sort": [
            {"event_time": {"order": order}},
            {"event_id": {"order": order}},
        ],
        "track_total_hits": False,
    }
    if after is not None:
        body["search_after"] = after
    return body


AGGREGATE_SORT_SHAPE = (int, str)


def aggregates_body(
    metric: str,
    scope: str,
    key: list[str] | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    after: list[Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "size": limit,
        "query": {
            "bool": {
                "filter": [
                    {"term": {"metric": metric}},
                    {"term": {"scope": scope}},
                    *terms("key", key),
                    *time_range("window_start", start, end),
                ]
            }
        },
        "sort": [
            {"window_start": {"order": "asc"}},
            {"key": {"order": "asc"}},
        ],
        "track_total_hits": False,
    }
    if after is not None:
        body["search_after"] = after
    return body


def sort_values(hit: dict[str, Any]) -> list[Any]:
    """A hit's sort values as a cursor carries them (epoch millis as an int)."""
    values = list(hit["sort"])
    first = values[0]
    values[0] = int(first) if not isinstance(first, str) else int(float(first))
    return values
