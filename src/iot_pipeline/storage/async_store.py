"""The read side of the storage interface, async (the API): each engine's official async
client, errors translated to the same StoreError hierarchy as the sync adapters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from iot_pipeline.errors import TransientStoreError
from iot_pipeline.settings import Settings
from iot_pipeline.storage.base import error_for_status

T = TypeVar("T")


class AsyncSearchStore(Protocol):
    """What the API needs from a search engine."""

    engine: str

    async def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run a search; returns the raw response body (missing indices match nothing)."""

    async def ping(self) -> bool:
        """Whether the engine answers."""

    async def close(self) -> None:
        """Release connections."""


class _AsyncClientStore:
    """What both official async clients do alike."""

    client: Any

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception:  # any failure means "not ready"
            return False

    async def close(self) -> None:
        await self.client.close()


class AsyncOpenSearchStore(_AsyncClientStore):
    engine = "opensearch"

    def __init__(self, url: str, username: str = "", password: str = "", timeout: float = 10):
        from opensearchpy import AsyncOpenSearch

        auth = (username, password) if username else None
        self.client = AsyncOpenSearch(hosts=[url], http_auth=auth, timeout=timeout, max_retries=0)

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        from opensearchpy import exceptions as os_errors

        try:
            return await call()
        except (os_errors.ConnectionError, os_errors.ConnectionTimeout) as exc:
            raise TransientStoreError(f"OpenSearch unreachable: {exc}") from exc
        except os_errors.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 500
            raise error_for_status(status)(
                f"OpenSearch answered {status}: {exc.error}"[:500]
            ) from exc

    async def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._call(
            lambda: self.client.search(
                index=index, body=body, allow_no_indices=True, ignore_unavailable=True
            )
        )
        return dict(response)


class AsyncElasticsearchStore(_AsyncClientStore):
    engine = "elasticsearch"

    def __init__(self, url: str, username: str = "", password: str = "", timeout: float = 10):
        from elasticsearch import AsyncElasticsearch

        auth = (username, password) if username else None
        self.client = AsyncElasticsearch(
            url, basic_auth=auth, request_timeout=timeout, max_retries=0
        )

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        import elastic_transport
        import elasticsearch

        try:
            return await call()
        except elastic_transport.TransportError as exc:
            raise TransientStoreError(f"Elasticsearch unreachable: {exc}") from exc
        except elasticsearch.ApiError as exc:
            raise error_for_status(exc.meta.status)(
                f"Elasticsearch answered {exc.meta.status}: {exc.message}"[:500]
            ) from exc

    async def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        # the official client takes the body's keys as keyword arguments (as the sync adapter)
        response = await self._call(
            lambda: self.client.search(
                index=index, allow_no_indices=True, ignore_unavailable=True, **body
            )
        )
        return dict(response)


def make_async_store(settings: Settings) -> AsyncSearchStore:
    """The async adapter SEARCH_ENGINE names, connected to SEARCH_URL."""
    password = settings.search_password.get_secret_value()
    if settings.search_engine == "elasticsearch":
        return AsyncElasticsearchStore(settings.search_url, settings.search_username, password)
    return AsyncOpenSearchStore(settings.search_url, settings.search_username, password)
