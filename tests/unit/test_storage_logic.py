"""Bulk retry logic, chunking, templates and retention, with a scripted store (pure logic)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from iot_pipeline.errors import PermanentStoreError, StoreRefused, TransientStoreError
from iot_pipeline.storage import (
    BulkOutcome,
    BulkPolicy,
    IndexAction,
    ItemFailure,
    index_all,
    load_templates,
)
from iot_pipeline.storage.base import error_for_status, parse_bulk_response
from iot_pipeline.storage.bulk import chunks
from iot_pipeline.storage.retention import expired_indices, last_day
from iot_pipeline.storage.templates import additions, missing_fields

ROOT = Path(__file__).resolve().parents[2]


class ScriptedStore:
    """Fails given ids with given statuses for a number of attempts."""

    engine = "scripted"

    def __init__(self, failures: dict[str, list[int]], types: dict[int, str] | None = None):
        self.failures = failures
        self.types = types or {429: "es_rejected_execution_exception", 503: "unavailable"}
        self.requests: list[list[str]] = []
        self.stored: dict[str, dict[str, Any]] = {}

    def bulk_index(self, actions: list[IndexAction], refresh: bool = False) -> BulkOutcome:
        self.requests.append([a.id for a in actions])
        outcome = BulkOutcome()
        for action in actions:
            script = self.failures.get(action.id, [])
            if script:
                status = script.pop(0)
                kind = self.types.get(status, "mapper_parsing_exception")
                outcome.failures.append(ItemFailure(action, status, kind, f"status {status}"))
            else:
                self.stored[action.id] = action.document
                outcome.indexed += 1
        return outcome


def _actions(n: int) -> list[IndexAction]:
    return [IndexAction("i", f"d{k}", {"k": k}) for k in range(n)]


def test_only_failed_items_are_retried_with_growing_jittered_delays() -> None:
    store = ScriptedStore({"d1": [429, 503], "d3": [400]})
    delays: list[float] = []
    report = index_all(
        store,  # type: ignore[arg-type]
        _actions(5),
        BulkPolicy(base_delay=1.0),
        sleep=delays.append,
        jitter=lambda: 1.0,
    )
    assert store.requests == [["d0", "d1", "d2", "d3", "d4"], ["d1"], ["d1"]]
    assert delays == [1.0, 2.0]
    assert report.indexed == 4
    assert [f.action.id for f in report.rejected] == ["d3"]
    assert set(store.stored) == {"d0", "d1", "d2", "d4"}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, "cluster_block_exception"),  # the flood-stage watermark of a full disk
        (403, "cluster_block_exception"),  # index.blocks.write
        (403, "security_exception"),  # a login without the privilege
        (401, "security_exception"),
        (404, "index_not_found_exception"),  # the engine will not create the index
        (400, "validation_exception"),  # the shard limit
    ],
)
def test_a_refusal_of_the_engines_own_raises_at_once_and_rejects_nothing(
    status: int, kind: str
) -> None:
    store = ScriptedStore({"d2": [status] * 10}, {status: kind})
    with pytest.raises(StoreRefused, match=rf"^{status} {kind}: .*1 of 5 documents for i"):
        index_all(store, _actions(5), sleep=lambda _: None)  # type: ignore[arg-type]
    assert store.requests == [["d0", "d1", "d2", "d3", "d4"]]  # no retry of a block


def test_more_than_half_of_a_request_refused_with_one_error_is_systemic() -> None:
    """A mapping error on most of a request is a template or mapping gone, not bad data;
    a few are bad documents (dead letters), and conflicts are the caller's business."""
    many = ScriptedStore({f"d{k}": [400] for k in range(11)})
    with pytest.raises(StoreRefused, match=r"11 of 20 documents .* refused with one error"):
        index_all(many, _actions(20))  # type: ignore[arg-type]
    few = ScriptedStore({f"d{k}": [400] for k in range(4)})
    assert len(index_all(few, _actions(6)).rejected) == 4  # type: ignore[arg-type]
    races = ScriptedStore({f"d{k}": [409] for k in range(20)}, {409: "version_conflict"})
    assert all(f.conflict for f in index_all(races, _actions(20)).rejected)  # type: ignore[arg-type]


def test_a_login_refused_by_the_engine_is_a_refusal_not_a_bad_request() -> None:
    assert error_for_status(403) is StoreRefused
    assert error_for_status(401) is StoreRefused
    assert error_for_status(400) is PermanentStoreError
    assert error_for_status(503) is TransientStoreError


def test_items_failing_too_long_raise_transient_without_losing_the_rest() -> None:
    store = ScriptedStore({"d0": [500] * 10})
    with pytest.raises(TransientStoreError, match="1 documents still failing"):
        index_all(store, _actions(3), BulkPolicy(max_attempts=3), sleep=lambda _: None)  # type: ignore[arg-type]
    assert set(store.stored) == {"d1", "d2"}


def test_requests_are_bounded_by_count_and_bytes() -> None:
    sizes = [len(c) for c in chunks(_actions(25), BulkPolicy(max_docs=10))]
    assert sizes == [10, 10, 5]
    big = [IndexAction("i", f"d{k}", {"blob": "x" * 1000}) for k in range(10)]
    assert all(len(c) <= 3 for c in chunks(big, BulkPolicy(max_bytes=3500)))
    assert sum(len(c) for c in chunks(big, BulkPolicy(max_bytes=3500))) == 10


def test_bulk_response_items_map_back_to_actions() -> None:
    actions = _actions(2)
    body = {
        "items": [
            {"index": {"status": 201}},
            {
                "index": {
                    "status": 400,
                    "error": {"type": "strict_dynamic_mapping_exception", "reason": "no [x]"},
                }
            },
        ]
    }
    outcome = parse_bulk_response(actions, body)
    assert outcome.indexed == 1
    (failure,) = outcome.failures
    assert (failure.action.id, failure.status, failure.error_type) == (
        "d1",
        400,
        "strict_dynamic_mapping_exception",
    )
    assert not failure.retryable


def test_templates_get_the_prefix() -> None:
    templates = load_templates(ROOT / "elasticsearch", "abc")
    assert templates["abc-readings"]["index_patterns"] == ["abc-readings-*"]
    assert "$comment" not in templates["abc-readings"]
    mapping = templates["abc-readings"]["template"]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"]["location"]["type"] == "geo_point"


def test_existing_indices_only_gain_the_fields_they_lack() -> None:
    """A field made cheaper (`index: false`) stays as it was on the indices that have it:
    the engine refuses that change on an existing field. New fields, also inside objects,
    are added."""
    wanted = {
        "properties": {
            "seq": {"type": "long", "index": False},
            "parts": {"type": "long"},
            "kafka": {"properties": {"offset": {"type": "long"}, "lag": {"type": "long"}}},
        }
    }
    old = {"seq": {"type": "long"}, "kafka": {"properties": {"offset": {"type": "long"}}}}
    assert missing_fields(wanted["properties"], old) == {
        "parts": {"type": "long"},
        "kafka": {"properties": {"lag": {"type": "long"}}},
    }
    assert missing_fields(wanted["properties"], wanted["properties"]) == {}
    indices = {
        "r-2": {"mappings": {"properties": old}},
        "r-1": {"mappings": {"properties": old}},
        "r-3": {"mappings": wanted},
        "r-0": {"mappings": {}},
    }
    groups = additions(wanted, indices)
    assert groups == [
        (["r-0"], wanted["properties"]),
        (["r-1", "r-2"], missing_fields(wanted["properties"], old)),
    ]


def test_retention_of_monthly_and_yearly_indices_counts_their_last_day() -> None:
    names = ["p-agg-1h-2026.09", "p-agg-1h-2026.10", "p-agg-1d-2024", "p-agg-1d-2025"]
    # 58 days kept from 2026-11-28: October ends inside them, September before them
    assert expired_indices(names, date(2026, 11, 28), keep_days=58) == [
        "p-agg-1d-2024",
        "p-agg-1d-2025",
        "p-agg-1h-2026.09",
    ]
    assert last_day("p-agg-1h-2026.12") == date(2026, 12, 31)
    assert last_day("p-agg-1h-2024.02") == date(2024, 2, 29)
    assert last_day("p-agg-1d-2026") == date(2026, 12, 31)
    assert last_day("p-agg-1h") is None


def test_retention_keeps_whole_recent_days() -> None:
    names = ["p-readings-2026.11.20", "p-readings-2026.11.26", "p-readings-2026.11.28", "other"]
    assert expired_indices(names, date(2026, 11, 28), keep_days=3) == ["p-readings-2026.11.20"]
    with pytest.raises(ValueError, match="at least 1"):
        expired_indices(names, date(2026, 11, 28), keep_days=0)


def test_the_engine_setting_picks_the_adapter() -> None:
    from iot_pipeline.settings import Settings
    from iot_pipeline.storage import make_store
    from iot_pipeline.storage.elasticsearch_store import ElasticsearchStore
    from iot_pipeline.storage.opensearch_store import OpenSearchStore

    # building a client opens no connection
    elastic = make_store(Settings(search_engine="elasticsearch"))
    opensearch = make_store(Settings(search_engine="opensearch"))
    assert isinstance(elastic, ElasticsearchStore)
    assert isinstance(opensearch, OpenSearchStore)
    elastic.close()
    opensearch.close()


def test_async_store_follows_the_engine_setting() -> None:
    import asyncio

    from iot_pipeline.settings import Settings
    from iot_pipeline.storage import make_async_store

    async def engines() -> list[str]:
        names = []
        for engine in ("opensearch", "elasticsearch"):
            store = make_async_store(Settings(search_engine=engine))
            names.append(store.engine)
            await store.close()
        return names

    assert asyncio.run(engines()) == ["opensearch", "elasticsearch"]


def _engine_errors() -> list[tuple[str, Any, Exception, type[Exception] | None]]:
    import elastic_transport
    import elasticsearch
    from opensearchpy import exceptions as os_errors

    from iot_pipeline.storage import elasticsearch_store, opensearch_store

    def es_api(status: int) -> Exception:
        meta = elastic_transport.ApiResponseMeta(
            status,
            "1.1",
            elastic_transport.HttpHeaders(),
            0.1,
            None,  # type: ignore[arg-type]
        )
        return elasticsearch.ApiError("refused", meta, {"error": "x"})

    os_error, es_error = opensearch_store.store_error, elasticsearch_store.store_error
    return [
        (
            "os refused connection",
            os_error,
            os_errors.ConnectionError("N/A", "refused", None),
            TransientStoreError,
        ),
        (
            "os timeout",
            os_error,
            os_errors.ConnectionTimeout("TIMEOUT", "slow", None),
            TransientStoreError,
        ),
        ("os 429", os_error, os_errors.TransportError(429, "too many", {}), TransientStoreError),
        ("os 503", os_error, os_errors.TransportError(503, "unavailable", {}), TransientStoreError),
        ("os 400", os_error, os_errors.RequestError(400, "bad", {}), PermanentStoreError),
        ("os other", os_error, ValueError("ours"), None),
        (
            "es refused connection",
            es_error,
            elastic_transport.ConnectionError("refused"),
            TransientStoreError,
        ),
        ("es timeout", es_error, elastic_transport.ConnectionTimeout("slow"), TransientStoreError),
        ("es 429", es_error, es_api(429), TransientStoreError),
        ("es 403", es_error, es_api(403), PermanentStoreError),
        ("es other", es_error, ValueError("ours"), None),
    ]


def test_each_engine_translates_its_client_errors_once_for_both_adapters() -> None:
    from iot_pipeline.storage.base import translated

    for name, store_error, raised, expected in _engine_errors():
        with pytest.raises(expected or type(raised)) as caught, translated(store_error):
            raise raised
        if expected is not None:
            assert caught.value.__cause__ is raised, name
            assert len(str(caught.value)) <= 1000, name
