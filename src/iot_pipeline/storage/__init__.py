"""Storage: one small interface, an adapter per engine, bulk indexing that loses nothing."""

from iot_pipeline.settings import Settings
from iot_pipeline.storage.base import (
    BulkOutcome,
    IndexAction,
    ItemFailure,
    SearchStore,
)
from iot_pipeline.storage.bulk import BulkPolicy, IndexReport, index_all
from iot_pipeline.storage.templates import load_templates


def make_store(settings: Settings) -> SearchStore:
    """The adapter SEARCH_ENGINE names, connected to SEARCH_URL."""
    password = settings.search_password.get_secret_value()
    if settings.search_engine == "elasticsearch":
        from iot_pipeline.storage.elasticsearch_store import ElasticsearchStore

        return ElasticsearchStore(settings.search_url, settings.search_username, password)
    from iot_pipeline.storage.opensearch_store import OpenSearchStore

    return OpenSearchStore(settings.search_url, settings.search_username, password)


__all__ = [
    "BulkOutcome",
    "BulkPolicy",
    "IndexAction",
    "IndexReport",
    "ItemFailure",
    "SearchStore",
    "index_all",
    "load_templates",
    "make_store",
]
