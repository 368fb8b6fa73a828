"""SearchStore on Elasticsearch 8/9 with the official `elasticsearch` client: the sync adapter
(the workers) and the async one (the API), over one translation of the client's errors.

The client checks that the server is Elasticsearch (product header), so these adapters cannot
be pointed at OpenSearch; the native stack runs OpenSearch and the container deployment runs
Elasticsearch. Request bodies are the same as the OpenSearch adapters'.
"""

from __future__ import annotations

from typing import Any, cast

import elastic_transport
import elasticsearch

from iot_pipeline.errors import PermanentStoreError, StoreError, TransientStoreError
from iot_pipeline.storage.base import (
    BULK_FILTER,
    AsyncClientStore,
    BulkOutcome,
    IndexAction,
    Versioned,
    bulk_body,
    conflicts_translated,
    error_for_status,
    found_sources,
    found_versioned,
    is_missing_index,
    mget_body,
    parse_bulk_response,
    translated,
    version_params,
)
from iot_pipeline.storage.templates import apply_templates


def store_error(exc: Exception) -> StoreError | None:
    """The StoreError an `elasticsearch` client exception stands for (None: not the client's)."""
    if isinstance(exc, (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout)):
        return TransientStoreError(f"Elasticsearch unreachable: {exc}"[:1000])
    if isinstance(exc, elasticsearch.ApiError):
        status = exc.meta.status
        return error_for_status(status)(
            f"Elasticsearch answered {status}: {exc.message} {exc.body}"[:1000]
        )
    return None


class ElasticsearchStore:
    """The pipeline's storage on an Elasticsearch cluster."""

    engine = "elasticsearch"

    def __init__(self, url: str, username: str = "", password: str = "", timeout: float = 30):
        auth = (username, password) if username else None
        self.client = elasticsearch.Elasticsearch(
            url, basic_auth=auth, request_timeout=timeout, max_retries=0
        )

    def ensure_templates(self, templates: dict[str, dict[str, Any]]) -> None:
        indices = self.client.indices
        with translated(store_error):
            apply_templates(
                templates,
                lambda name, body: indices.put_index_template(name=name, **body),
                lambda pattern: indices.get_mapping(
                    index=pattern,
                    allow_no_indices=True,
                    ignore_unavailable=True,  # a pattern naming one index, not created yet
                ),
                lambda names, fields: indices.put_mapping(index=names, properties=fields),
            )

    def bulk_index(self, actions: list[IndexAction], refresh: bool = False) -> BulkOutcome:
        if not actions:
            return BulkOutcome()
        # Pre-encoded NDJSON bytes pass through the client's serializer untouched; its type
        # hints only know the list-of-dicts form.
        body = cast(Any, bulk_body(actions))
        with translated(store_error):
            response = self.client.bulk(operations=body, refresh=refresh, filter_path=BULK_FILTER)
        return parse_bulk_response(actions, dict(response))

    def refresh(self, index: str) -> None:
        with translated(store_error):
            self.client.indices.refresh(index=index, allow_no_indices=True)

    def get_many(self, index: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        try:
            with translated(store_error):
                response = self.client.mget(index=index, ids=ids)
        except PermanentStoreError as exc:
            if is_missing_index(exc):
                return {}
            raise
        return found_sources(response)

    def get_versioned(self, refs: list[tuple[str, str]]) -> dict[tuple[str, str], Versioned]:
        if not refs:
            return {}
        with translated(store_error):
            return found_versioned(self.client.mget(docs=mget_body(refs)["docs"]))

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        with translated(store_error):
            return dict(self.client.search(index=index, allow_no_indices=True, **body))

    def count(self, index: str, query: dict[str, Any] | None = None) -> int:
        with translated(store_error):
            response = self.client.count(index=index, query=query, allow_no_indices=True)
        return int(response["count"])

    def list_indices(self, pattern: str) -> list[str]:
        with translated(store_error):
            response = self.client.indices.get(
                index=pattern, allow_no_indices=True, ignore_unavailable=True
            )
        return sorted(response)

    def delete_indices(self, names: list[str]) -> None:
        if names:
            with translated(store_error):
                self.client.indices.delete(index=",".join(names))

    def close(self) -> None:
        self.client.close()


class AsyncElasticsearchStore(AsyncClientStore):
    """The API's read side on Elasticsearch (the client's async flavour)."""

    engine = "elasticsearch"

    def __init__(self, url: str, username: str = "", password: str = "", timeout: float = 10):
        auth = (username, password) if username else None
        self.client = elasticsearch.AsyncElasticsearch(
            url, basic_auth=auth, request_timeout=timeout, max_retries=0
        )

    async def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        # the official client takes the body's keys as keyword arguments (as the sync adapter)
        with translated(store_error):
            response = await self.client.search(
                index=index, allow_no_indices=True, ignore_unavailable=True, **body
            )
        return dict(response)

    async def put(
        self,
        index: str,
        doc_id: str,
        document: dict[str, Any],
        version: tuple[int, int] | None = None,
    ) -> None:
        with conflicts_translated(), translated(store_error):
            await self.client.index(
                index=index, id=doc_id, document=document, refresh=True, **version_params(version)
            )

    async def delete(self, index: str, doc_id: str) -> bool:
        try:
            with translated(store_error):
                await self.client.delete(index=index, id=doc_id, refresh=True)
        except PermanentStoreError as exc:
            if isinstance(exc.__cause__, elasticsearch.NotFoundError):
                return False  # no such document, or no index yet
            raise
        return True
