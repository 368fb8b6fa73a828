"""The API's search bodies and cursors (pure logic)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from iot_pipeline.api import queries


def test_cursor_round_trip_and_refusals() -> None:
    cursor = queries.encode_cursor([1_764_000_000_000, "e-1"])
    # crafted by hand: encode_cursor takes a list
    not_a_list = base64.urlsafe_b64encode(json.dumps({"a": 1}).encode()).decode().rstrip("=")
    assert queries.decode_cursor(cursor, queries.READING_SORT_SHAPE) == [1_764_000_000_000, "e-1"]
    for bad in ("%%%", "bm90IGpzb24", queries.encode_cursor(["x", "y"]),
                queries.encode_cursor([1, "a", 2]), queries.encode_cursor([True, "a"]),
                not_a_list):  # fmt: skip
        with pytest.raises(queries.BadCursor):
            queries.decode_cursor(bad, queries.READING_SORT_SHAPE)


def test_user_values_only_reach_terms_and_ranges() -> None:
    hostile = 'Anfa" OR *:* OR "x'
    where = queries.ReadingFilter(
        district=[hostile],
        metric=["pm25"],
        start=datetime(2026, 11, 1, tzinfo=UTC),
        end=datetime(2026, 11, 2),  # naive: UTC
        quality="valid",
        flag="spike",
    )
    body = queries.readings_body(where, "desc", 50, [1, "e"])
    filters = body["query"]["bool"]["filter"]
    assert {"terms": {"district": [hostile]}} in filters
    assert {"term": {"valid": True}} in filters
    assert {"term": {"flags": "spike"}} in filters
    rng = next(f["range"]["event_time"] for f in filters if "range" in f)
    assert rng == {"gte": 1_793_491_200_000, "lt": 1_793_577_600_000, "format": "epoch_millis"}
    assert "query_string" not in json.dumps(body)
    assert body["search_after"] == [1, "e"]
    assert body["size"] == 50
    assert [list(s) for s in body["sort"]] == [["event_time"], ["event_id"]]


def test_quality_filters() -> None:
    assert queries.quality_filter("all", None) == []
    assert queries.quality_filter("invalid", None) == [{"term": {"valid": False}}]
    assert queries.quality_filter("flagged", None) == [{"exists": {"field": "flags"}}]


def test_aggregates_sort_totally() -> None:
    agg = queries.aggregates_body("pm10", "district", ["Anfa"], None, None, 10, None)
    assert {"term": {"scope": "district"}} in agg["query"]["bool"]["filter"]
    assert [list(s) for s in agg["sort"]] == [["window_start"], ["key"]]


def test_sort_values_are_ints_for_the_cursor() -> None:
    assert queries.sort_values({"sort": ["1764000000000", "e"]}) == [1_764_000_000_000, "e"]
    assert queries.sort_values({"sort": [1764000000000, "e"]}) == [1_764_000_000_000, "e"]
