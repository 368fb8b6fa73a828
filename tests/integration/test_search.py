"""The search node for real: create an index, bulk-index, search and aggregate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opensearchpy import OpenSearch, helpers

from iot_pipeline.settings import Settings


@pytest.fixture
def client(test_settings: Settings) -> Iterator[OpenSearch]:
    auth = None
    if test_settings.search_username:
        auth = (test_settings.search_username, test_settings.search_password.get_secret_value())
    client = OpenSearch(hosts=[test_settings.search_url], http_auth=auth, timeout=30)
    yield client
    client.close()


@pytest.fixture
def index(client: OpenSearch, test_settings: Settings) -> Iterator[str]:
    name = f"{test_settings.search_index_prefix}-readings"
    client.indices.create(
        index=name,
        body={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "sensor_id": {"type": "keyword"},
                    "district": {"type": "keyword"},
                    "metric": {"type": "keyword"},
                    "value": {"type": "double"},
                    "event_time": {"type": "date"},
                },
            },
        },
    )
    yield name
    client.indices.delete(index=name)


def _readings() -> list[dict[str, Any]]:
    districts = ["Anfa", "Maarif", "Sidi Belyout", "Ain Chock"]
    return [
        {
            "sensor_id": f"s-{i % 20:02d}",
            "district": districts[i % len(districts)],
            "metric": "temperature",
            "value": 15.0 + (i % 10),
            "event_time": f"2026-11-28T{i % 24:02d}:{i % 60:02d}:00Z",
        }
        for i in range(400)
    ]


def test_bulk_index_search_and_aggregate(client: OpenSearch, index: str) -> None:
    readings = _readings()
    actions = [
        {"_index": index, "_id": f"{doc['sensor_id']}:{n}", "_source": doc}
        for n, doc in enumerate(readings)
    ]
    indexed, errors = helpers.bulk(client, actions, refresh="wait_for", raise_on_error=False)
    assert (indexed, errors) == (400, [])

    anfa = client.count(index=index, body={"query": {"term": {"district": "Anfa"}}})
    assert anfa["count"] == sum(1 for r in readings if r["district"] == "Anfa")

    result = client.search(
        index=index,
        body={
            "size": 0,
            "aggs": {
                "by_district": {
                    "terms": {"field": "district"},
                    "aggs": {"avg": {"avg": {"field": "value"}}},
                }
            },
        },
    )
    buckets = {
        b["key"]: b["avg"]["value"] for b in result["aggregations"]["by_district"]["buckets"]
    }
    for district, average in buckets.items():
        values = [r["value"] for r in readings if r["district"] == district]
        assert average == pytest.approx(sum(values) / len(values))


def test_same_id_overwrites_instead_of_duplicating(client: OpenSearch, index: str) -> None:
    doc = _readings()[0]
    for value in (1.0, 2.0):
        client.index(index=index, id="fixed-id", body={**doc, "value": value}, refresh="wait_for")
    assert client.count(index=index)["count"] == 1
    assert client.get(index=index, id="fixed-id")["_source"]["value"] == 2.0


def test_mapping_rejection_is_reported_per_item(client: OpenSearch, index: str) -> None:
    good = {"_index": index, "_id": "good", "_source": _readings()[0]}
    bad = {"_index": index, "_id": "bad", "_source": {**_readings()[1], "unexpected": 1}}
    indexed, errors = helpers.bulk(client, [good, bad], refresh="wait_for", raise_on_error=False)
    assert indexed == 1
    assert len(errors) == 1
    assert errors[0]["index"]["_id"] == "bad"
    assert errors[0]["index"]["status"] == 400
