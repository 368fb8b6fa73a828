"""Quarantine: what keeps failing is set aside so that its partition moves on (the
orchestrator first narrows a failing range to the records that fail, `narrow_failure`).

Its records go to the dead-letter topic (reason `range_failed`, the error in the detail),
where `iot_dead_letter_replay` brings them back once the cause is fixed. Records of the range
that were dead-lettered before (one letter per source record) are not written again.
Runs in the orchestrator, not on a worker: the worker may be what keeps failing.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import redis

from iot_pipeline.cleaning import DeadLetter
from iot_pipeline.orchestration.run_state import Quarantine, note_quarantined
from iot_pipeline.processing.dead_letters import (
    not_yet_sent,
    notes_lifetime,
    remember_sent,
    send_dead_letters,
)
from iot_pipeline.processing.ranges import OffsetRange
from iot_pipeline.processing.reader import read_pieces
from iot_pipeline.settings import Settings
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
    log.error(
        "QUARANTINED %s after %d failed attempts: %d records dead-lettered as %s (replay them "
        "with iot_dead_letter_replay once fixed); last error: %s",
        offsets,
        attempts,
        records,
        RANGE_FAILED,
        error,
    )
    return entry
