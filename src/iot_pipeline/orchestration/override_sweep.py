"""The sweep of operator overrides a worker has not settled yet: the API sends each new or
deleted override to a worker, and when that message was lost (the broker was down) the
override waits, `pending` or `removing`, until this sweep sends it again. Sending twice is
harmless: settling is idempotent. The `iot_housekeeping` DAG runs it daily (or on demand)."""

from __future__ import annotations

import logging

from iot_pipeline.contracts.tasks import create_app, send_settle
from iot_pipeline.processing.overrides import unsettled
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

log = logging.getLogger(__name__)


def sweep_overrides(settings: Settings) -> list[str]:
    """Send every unsettled override to the workers; returns their ids."""
    store = make_store(settings)
    try:
        ids = unsettled(store, settings.search_index_prefix)
    finally:
        store.close()
    if ids:
        client = create_app(settings)
        for override_id in ids:
            send_settle(client, override_id)
        log.info("sent %d unsettled override(s) to the workers", len(ids))
    return ids
