"""SearchStore on OpenSearch, with the official `opensearch-py` client."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import orjson
from opensearchpy import JSONSerializer, OpenSearch
from opensearchpy import exceptions as os_errors

from iot_pipeline.errors import PermanentStoreError, TransientStoreError
from iot_pipeline.storage.base import (
    BULK_FILTER,
    BulkOutcome,
    IndexAction,
    Versioned,
    bulk_body,
    error_for_status,
    found_sources,
    found_versioned,
    is_missing_index,
    mget_body,
    parse_bulk_response,
)

T = TypeVar("T")

# Connections kept per node: at least the bulk requests a task keeps in flight plus the
# searches of aggregation (urllib3's default of 1 discards a connection per request).
POOL_SIZE = 8


class _FastJSON(JSONSerializer):
    """Responses parsed with orjson (aggregation pages are large; several times faster)."""

    def loads(self, s: str) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return super().loads(s)  # raises the client's own SerializationError


def _translate(call: Callable[[], T]) -> T:
    try:
        return call()
    except (os_errors.ConnectionError, os_errors.ConnectionTimeout) as exc:
        raise TransientStoreError(f"OpenSearch unreachable: {exc}") from exc
    except os_errors.TransportError as exc:
        status = exc.status_code if isinstance(exc.status_code, int) else 500
        raise error_for_status(status)(
            f"OpenSearch answered {status}: {exc.error} {exc.info}"[:1000]
        ) from exc


class OpenSearchStore:
    """The pipeline's storage on an OpenSearch cluster."""

    engine = "opensearch"

    def __init__(self, url: str, username: str = "", password: str = "", timeout: float = 30):
        auth = (username, password) if username else None
        self.client = OpenSearch(
            hosts=[url],
            http_auth=auth,
            timeout=timeout,
            max_retries=0,
            pool_maxsize=POOL_SIZE,
            serializer=_FastJSON(),
        )

    def ensure_templates(self, templates: dict[str, dict[str, Any]]) -> None:
        for name, body in templates.items():
            _translate(partial(self.client.indices.put_index_template, name=name, body=body))
            mappings = body.get("template", {}).get("mappings")
            if mappings:
                patterns = ",".join(body["index_patterns"])
                _translate(
                    partial(
                        self.client.indices.put_mapping,
                        index=patterns,
                        body=mappings,
                        allow_no_indices=True,
                    )
                )

    def bulk_index(self, actions: list[IndexAction], refresh: bool = False) -> BulkOutcome:
        if not actions:
            return BulkOutcome()
        body = bulk_body(actions)
        response = _translate(
            lambda: self.client.bulk(
                body=body, refresh="true" if refresh else "false", filter_path=BULK_FILTER
            )
        )
        return parse_bulk_response(actions, response)

    def refresh(self, index: str) -> None:
        _translate(lambda: self.client.indices.refresh(index=index, allow_no_indices=True))

    def get_many(self, index: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        try:
            response = _translate(lambda: self.client.mget(index=index, body={"ids": ids}))
        except PermanentStoreError as exc:
            if is_missing_index(exc):
                return {}
            raise
        return found_sources(response)

    def get_versioned(self, refs: list[tuple[str, str]]) -> dict[tuple[str, str], Versioned]:
        if not refs:
            return {}
        return found_versioned(_translate(lambda: self.client.mget(body=mget_body(refs))))

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            _translate(lambda: self.client.search(index=index, body=body, allow_no_indices=True))
        )

    def count(self, index: str, query: dict[str, Any] | None = None) -> int:
        body = {"query": query} if query else None
        response = _translate(
            lambda: self.client.count(index=index, body=body, allow_no_indices=True)
        )
        return int(response["count"])

    def list_indices(self, pattern: str) -> list[str]:
        response = _translate(
            lambda: self.client.indices.get(
                index=pattern, allow_no_indices=True, ignore_unavailable=True
            )
        )
        return sorted(response)

    def delete_indices(self, names: list[str]) -> None:
        if names:
            _translate(lambda: self.client.indices.delete(index=",".join(names)))

    def close(self) -> None:
        self.client.close()
