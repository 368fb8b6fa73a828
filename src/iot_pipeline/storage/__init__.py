"""Storage: one small interface (sync for the workers, async for the API), one module per
engine holding both of its adapters, bulk indexing that loses nothing."""

from iot_pipeline.settings import Settings
from iot_pipeline.storage.base import (
    AsyncSearchStore,
    BulkOutcome,
    IndexAction,
    ItemFailure,
    SearchStore,
)
from iot_pipeline.storage.bulk import BulkPolicy, IndexReport, index_all, refuse_rejections
from iot_pipeline.storage.templates import load_templates


def make_store(settings: Settings) -> SearchStore:
    """The adapter SEARCH_ENGINE names, connected to SEARCH_URL."""
    password = settings.search_password.get_secret_value()
    if settings.search_engine == "elasticsearch":
        from iot_pipeline.storage.elasticsearch_store import ElasticsearchStore

        return ElasticsearchStore(settings.search_url, settings.search_username, password)
    from iot_pipeline.storage.opensearch_store import OpenSearchStore

    return OpenSearchStore(settings.search_url, settings.search_username, password)


def make_async_store(settings: Settings) -> AsyncSearchStore:
    """The async adapter (the API's) SEARCH_ENGINE names, connected to SEARCH_URL."""
    password = settings.search_password.get_secret_value()
    if settings.search_engine == "elasticsearch":
        from iot_pipeline.storage.elasticsearch_store import AsyncElasticsearchStore

        return AsyncElasticsearchStore(settings.search_url, settings.search_username, password)
    from iot_pipeline.storage.opensearch_store import AsyncOpenSearchStore

    return AsyncOpenSearchStore(settings.search_url, settings.search_username, password)


__all__ = [
    "AsyncSearchStore",
    "BulkOutcome",
    "BulkPolicy",
    "IndexAction",
    "IndexReport",
    "ItemFailure",
    "SearchStore",
    "index_all",
    "load_templates",
    "make_async_store",
    "make_store",
    "refuse_rejections",
]
