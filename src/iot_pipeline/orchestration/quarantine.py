"""Quarantine: what keeps failing is set aside so that its partition moves on (the
orchestrator first narrows a failing range to the records that fail, `narrow_failure`).

Its records go to the dead-letter topic (reason `range_failed`, the error in the detail);
those stored already (the range failed after indexing them) are marked `quarantined` in the
store. The next clean run replays the range (etl.replay_quarantined) and lifts the marks;
`iot_dead_letter_replay` brings the letters back as well. Records of the range
that were dead-lettered before (one letter per source record) are not written again.
Runs in the orchestrator, not on a worker: the worker may be what keeps failing.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import redis

from iot_pipeline.cleaning import DeadLetter
from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.contracts.run_state import Quarantine, note_quarantined
from iot_pipeline.indices import readings_pattern
from iot_pipeline.processing.dead_letters import (
    not_yet_sent,
    notes_lifetime,
    remember_sent,
    send_dead_letters,
)
from iot_pipeline.processing.reader import read_pieces
from iot_pipeline.settings import Settings
from iot_pipeline.storage import IndexAction, index_all, make_store, refuse_rejections
from iot_pipeline.storage.base import search_all
from iot_pipeline.vocabulary import RANGE_FAILED

log = logging.getLogger(__name__)


def quarantine_range(
    settings: Settings,
    client: redis.Redis,
    offsets: OffsetRange,
    error: str,
    attempts: int,
    batch_id: str,
    ingest_time: datetime,
) -> Quarantine:
    """Dead-letter every record of the range as `range_failed` and log the quarantine."""
    detail = f"range {offsets} failed {attempts} times, last: {error}"[:1500]
    records = 0
    prefix = settings.search_index_prefix
    for part in read_pieces(settings, offsets):
        letters = [DeadLetter(r, RANGE_FAILED, "range", detail) for r in part]
        fresh = not_yet_sent(client, prefix, letters)
        send_dead_letters(settings, fresh, batch_id, ingest_time)
        remember_sent(client, prefix, fresh, notes_lifetime(settings.kafka_topics_file))
        records += len(part)
    entry = Quarantine(
        range=str(offsets),
        topic=offsets.topic,
        partition=offsets.partition,
        start=offsets.start,
        end=offsets.end,
        records=records,
        attempts=attempts,
        error=error[:500],
        batch_id=batch_id,
        at=time.time(),
    )
    note_quarantined(client, prefix, entry)
    marked = mark_stored(settings, offsets, True)
    log.error(
        "QUARANTINED %s after %d failed attempts: %d records dead-lettered as %s, %d of them "
        "stored already and marked `quarantined` (the next clean run replays the range); last "
        "error: %s",
        offsets,
        attempts,
        records,
        RANGE_FAILED,
        marked,
        error,
    )
    return entry


def mark_stored(settings: Settings, offsets: OffsetRange, quarantined: bool) -> int:
    """Mark (or unmark) the stored readings of a quarantined range's records: stored before
    their range failed, their flags and windows may be incomplete. Returns how many."""
    store = make_store(settings)
    try:
        body = {
            "_source": False,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"kafka.topic": offsets.topic}},
                        {"term": {"kafka.partition": offsets.partition}},
                        {"range": {"kafka.offset": {"gte": offsets.start, "lt": offsets.end}}},
                    ]
                }
            },
            "sort": [{"event_id": "asc"}],
        }
        hits = search_all(store, readings_pattern(settings.search_index_prefix), body, 5000)
        actions = [
            IndexAction(h["_index"], h["_id"], {"doc": {"quarantined": quarantined}}, "update")
            for h in hits
        ]
        if actions:
            refuse_rejections(index_all(store, actions, refresh=True), "quarantine marks")
        return len(actions)
    finally:
        store.close()
