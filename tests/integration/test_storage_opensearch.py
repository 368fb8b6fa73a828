"""The OpenSearch adapter against the real node: templates, strict mappings, bulk rejects,
idempotent ids, retention."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from iot_pipeline.settings import Settings
from iot_pipeline.storage import IndexAction, SearchStore, index_all, load_templates, make_store
from iot_pipeline.storage.retention import apply_retention

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(test_settings: Settings) -> Iterator[SearchStore]:
    store = make_store(test_settings)
    store.ensure_templates(
        load_templates(ROOT / "elasticsearch", test_settings.search_index_prefix)
    )
    yield store
    store.delete_indices(store.list_indices(f"{test_settings.search_index_prefix}-*"))
    store.close()


def _doc(n: int, **extra: object) -> dict[str, object]:
    return {
        "event_id": f"e{n}",
        "sensor_id": "casa-anfa-01-no2",
        "metric": "no2",
        "value": float(n),
        "event_time": "2026-11-28T08:00:00.000Z",
        "location": {"lat": 33.59, "lon": -7.65},
        "flags": [],
        "valid": True,
        "kafka": {"topic": "t", "partition": 1, "offset": n},
        **extra,
    }


def test_strict_mapping_rejects_per_item_and_indexes_the_rest(
    store: SearchStore, test_settings: Settings
) -> None:
    index = f"{test_settings.search_index_prefix}-readings-2026.11.28"
    actions = [IndexAction(index, f"e{n}", _doc(n)) for n in range(50)]
    actions[7] = IndexAction(index, "e7", _doc(7, unexpected="field"))
    actions[9] = IndexAction(index, "e9", _doc(9, value="not a number"))
    report = index_all(store, actions, refresh=True)
    assert report.indexed == 48
    assert sorted(f.action.id for f in report.rejected) == ["e7", "e9"]
    assert {f.status for f in report.rejected} == {400}
    assert store.count(index) == 48


def test_same_ids_twice_leave_the_same_documents(
    store: SearchStore, test_settings: Settings
) -> None:
    index = f"{test_settings.search_index_prefix}-readings-2026.11.27"
    actions = [IndexAction(index, f"e{n}", _doc(n)) for n in range(30)]
    index_all(store, actions, refresh=True)
    first = store.search(index, {"size": 100, "sort": [{"event_id": "asc"}]})["hits"]["hits"]
    index_all(store, actions, refresh=True)
    again = store.search(index, {"size": 100, "sort": [{"event_id": "asc"}]})["hits"]["hits"]
    assert [h["_source"] for h in first] == [h["_source"] for h in again]
    assert store.count(index) == 30


def test_retention_deletes_whole_old_days(store: SearchStore, test_settings: Settings) -> None:
    prefix = test_settings.search_index_prefix
    for day in ("2026.11.01", "2026.11.27", "2026.11.28"):
        index_all(store, [IndexAction(f"{prefix}-readings-{day}", "x", _doc(1))], refresh=True)
    deleted = apply_retention(test_settings, keep_days=2, today=date(2026, 11, 28))
    assert deleted == [f"{prefix}-readings-2026.11.01"]
    assert store.list_indices(f"{prefix}-readings-*") == [
        f"{prefix}-readings-2026.11.27",
        f"{prefix}-readings-2026.11.28",
    ]
    assert datetime.now(UTC)  # the store answers list/count on missing patterns too
    assert store.count(f"{prefix}-nothing-*") == 0


def test_writes_over_a_read_version_lose_to_a_writer_in_between(
    store: SearchStore, test_settings: Settings
) -> None:
    """Optimistic concurrency: `create` only on a free id, `if_seq_no` only over the version
    read (real-time reads, no refresh), and a missing index reads as a missing document."""
    index = f"{test_settings.search_index_prefix}-readings-2026.11.28"
    ref = (index, "e1")
    missing = (f"{test_settings.search_index_prefix}-readings-1999.01.01", "e1")
    assert store.get_versioned([ref, missing]) == {}
    first = index_all(store, [IndexAction(index, "e1", _doc(1), op="create")])
    assert first.indexed == 1
    again = index_all(store, [IndexAction(index, "e1", _doc(2), op="create")])
    assert [f.conflict for f in again.rejected] == [True]
    read = store.get_versioned([ref, missing])[ref]
    assert read.source["value"] == 1.0
    winner = IndexAction(
        index, "e1", _doc(3), if_seq_no=read.seq_no, if_primary_term=read.primary_term
    )
    assert index_all(store, [winner]).indexed == 1
    stale = IndexAction(
        index, "e1", _doc(4), if_seq_no=read.seq_no, if_primary_term=read.primary_term
    )
    lost = index_all(store, [stale])
    assert lost.indexed == 0
    assert [f.conflict for f in lost.rejected] == [True]
    assert store.get_versioned([ref])[ref].source["value"] == 3.0


def test_aggregate_indices_expire_per_resolution(
    store: SearchStore, test_settings: Settings
) -> None:
    prefix = test_settings.search_index_prefix
    names = [
        "agg-1m-2026.11.25",
        "agg-1m-2026.11.28",
        "agg-1h-2026.09",
        "agg-1h-2026.10",
        "agg-1d-2024",
        "agg-1d-2026",
    ]
    for name in names:
        index_all(store, [IndexAction(f"{prefix}-{name}", "x", {"scope": "sensor"})], refresh=True)
    kept = test_settings.model_copy(
        update={
            "aggregate_retention_days_1m": 2,
            "aggregate_retention_days_1h": 40,
            "aggregate_retention_days_1d": 400,
        }
    )
    deleted = apply_retention(kept, keep_days=30, today=date(2026, 11, 28))
    assert sorted(deleted) == sorted(
        f"{prefix}-{n}" for n in ("agg-1m-2026.11.25", "agg-1h-2026.09", "agg-1d-2024")
    )
    assert store.list_indices(f"{prefix}-agg-*") == sorted(
        f"{prefix}-{n}" for n in ("agg-1m-2026.11.28", "agg-1h-2026.10", "agg-1d-2026")
    )


def test_fields_a_template_gains_reach_the_indices_that_already_exist(
    store: SearchStore, test_settings: Settings
) -> None:
    """An upgrade adds a field (as `parts` of the aggregates was): the indices created under
    the previous template get it when the templates are applied again at start."""
    prefix = test_settings.search_index_prefix
    templates = load_templates(ROOT / "elasticsearch", prefix)
    older = copy.deepcopy(templates)
    del older[f"{prefix}-aggregates"]["template"]["mappings"]["properties"]["parts"]
    store.ensure_templates(older)
    index = f"{prefix}-agg-1h-2026.11"
    assert index_all(store, [IndexAction(index, "a", {"count": 1})], refresh=True).indexed == 1
    refused = index_all(store, [IndexAction(index, "b", {"count": 1, "parts": [0]})])
    assert refused.rejected
    assert "strict" in refused.rejected[0].reason
    store.ensure_templates(templates)
    assert index_all(store, [IndexAction(index, "b", {"count": 1, "parts": [0]})]).indexed == 1


def test_a_field_made_cheaper_reaches_new_indices_and_leaves_older_ones_as_they_are(
    store: SearchStore, test_settings: Settings
) -> None:
    """The readings template leaves fields no query filters on unindexed. An index created
    under a template that indexed them keeps them indexed (the engine refuses that change on
    an existing field): applying the templates again must neither fail nor touch them, and
    the next day's index gets the cheaper mapping."""
    prefix = test_settings.search_index_prefix
    templates = load_templates(ROOT / "elasticsearch", prefix)
    readings = templates[f"{prefix}-readings"]["template"]["mappings"]["properties"]
    assert readings["firmware"] == {"type": "keyword", "index": False}
    assert "index" not in readings["sensor_id"]
    older = copy.deepcopy(templates)
    for field in older[f"{prefix}-readings"]["template"]["mappings"]["properties"].values():
        field.pop("index", None)
    store.ensure_templates(older)
    old, new = f"{prefix}-readings-2026.11.27", f"{prefix}-readings-2026.11.28"
    doc = {**_doc(1), "firmware": "3.0.2"}
    assert index_all(store, [IndexAction(old, "a", doc)], refresh=True).indexed == 1
    store.ensure_templates(templates)  # an upgrade: the worker applies them at start
    assert index_all(store, [IndexAction(new, "a", doc)], refresh=True).indexed == 1

    mappings = cast(Any, store).client.indices.get_mapping(index=f"{old},{new}")
    assert "index" not in mappings[old]["mappings"]["properties"]["firmware"]
    assert mappings[new]["mappings"]["properties"]["firmware"]["index"] is False
    # and a query on it still finds the reading in both (from its doc values in the new one)
    query = {"query": {"term": {"firmware": "3.0.2"}}}
    assert store.search(f"{old},{new}", query)["hits"]["total"]["value"] == 2
