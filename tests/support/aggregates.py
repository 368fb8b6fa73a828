"""One stored window aggregate, looked up as the engine holds it (refreshed first: windows
are written without a refresh)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from iot_pipeline.indices import aggregates_pattern
from iot_pipeline.settings import Settings
from iot_pipeline.storage import SearchStore


def window(
    store: SearchStore, settings: Settings, resolution: str, scope: str, key: str, at: datetime
) -> dict[str, Any]:
    """The aggregate of one scope key's window starting `at` (exactly one must exist)."""
    pattern = aggregates_pattern(settings.search_index_prefix, resolution)
    store.refresh(pattern)
    body = {
        "query": {
            "bool": {
                "filter": [
                    {"term": {"scope": scope}},
                    {"term": {"key": key}},
                    {"term": {"window_start": at.strftime("%Y-%m-%dT%H:%M:%SZ")}},
                ]
            }
        }
    }
    (hit,) = store.search(pattern, body)["hits"]["hits"]
    source: dict[str, Any] = hit["_source"]
    return source
