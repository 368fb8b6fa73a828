"""SearchStore on OpenSearch with the official `opensearch-py` client: the sync adapter (the
workers) and the async one (the API), over one translation of the client's errors."""

from __future__ import annotations

from typing import Any

import orjson
from opensearchpy import JSONSerializer, OpenSearch
from opensearchpy import exceptions as os_errors

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

# Connections kept per node: at least the bulk requests a task keeps in flight plus the
# searches of aggregation (urllib3's default of 1 discards a connection per request).
POOL_SIZE = 8


def store_error(exc: Exception) -> StoreError | None:
    """The StoreError an `opensearch-py` exception stands for (None: not the client's)."""
    if isinstance(exc, os_errors.ConnectionError):  # timeouts and TLS errors included
        return TransientStoreError(f"OpenSearch unreachable: {exc}"[:1000])
    if isinstance(exc, os_errors.TransportError):
        status = exc.status_code if isinstance(exc.status_code, int) else 500
        return error_for_status(status)(
            f"OpenSearch answered {status}: {exc.error} {exc.info}"[:1000]
        )
    return None


class _FastJSON(JSONSerializer):
    """Responses parsed with orjson (aggregation pages are large; several times faster)."""

    def loads(self, s: str) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return super().loads(s)  # raises the client's own SerializationError


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
        indices = self.client.indices
        with translated(store_error):
            apply_templates(
                templates,
                lambda name, body: indices.put_index_template(name=name, body=body),
                lambda pattern: indices.get_mapping(
                    index=pattern,
                    allow_no_indices=True,
                    ignore_unavailable=True,  # a pattern naming one index, not created yet
                ),
                lambda names, fields: indices.put_mapping(index=names, body={"properties": fields}),
            )

    def bulk_index(self, actions: list[IndexAction], refresh: bool = False) -> BulkOutcome:
        if not actions:
            return BulkOutcome()
        body = bulk_body(actions)
        with translated(store_error):
            response = self.client.bulk(
                body=body, refresh="true" if refresh else "false", filter_path=BULK_FILTER
            )
        return parse_bulk_response(actions, response)

    def refresh(self, index: str) -> None:
        with translated(store_error):
            self.client.indices.refresh(index=index, allow_no_indices=True)

    def get_many(self, index: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        try:
            with translated(store_error):
                response = self.client.mget(index=index, body={"ids": ids})
        except PermanentStoreError as exc:
            if is_missing_index(exc):
                return {}
            raise
        return found_sources(response)

    def get_versioned(self, refs: list[tuple[str, str]]) -> dict[tuple[str, str], Versioned]:
        if not refs:
            return {}
        with translated(store_error):
            return found_versioned(self.client.mget(body=mget_body(refs)))

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        with translated(store_error):
            return dict(self.client.search(index=index, body=body, allow_no_indices=True))

    def count(self, index: str, query: dict[str, Any] | None = None) -> int:
        body = {"query": query} if query else None
        with translated(store_error):
            response = self.client.count(index=index, body=body, allow_no_indices=True)
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


class AsyncOpenSearchStore(AsyncClientStore):
    """The API's read side on OpenSearch (the client's async flavour, on aiohttp)."""

    engine = "opensearch"

    def __init__(self, url: str, username: str = "", password: str = "", timeout: float = 10):
        from opensearchpy import AsyncOpenSearch  # needs aiohttp: only the API loads it

        auth = (username, password) if username else None
        self.client = AsyncOpenSearch(hosts=[url], http_auth=auth, timeout=timeout, max_retries=0)

    async def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        with translated(store_error):
            response = await self.client.search(
                index=index, body=body, allow_no_indices=True, ignore_unavailable=True
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
                index=index, id=doc_id, body=document, refresh="true", **version_params(version)
            )

    async def delete(self, index: str, doc_id: str) -> bool:
        try:
            with translated(store_error):
                await self.client.delete(index=index, id=doc_id, refresh="true")
        except PermanentStoreError as exc:
            if isinstance(exc.__cause__, os_errors.NotFoundError):
                return False  # no such document, or no index yet
            raise
        return True
