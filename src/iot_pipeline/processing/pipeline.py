"""One offset range, end to end: read, clean, index, dead-letter, checkpoint."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass

import redis

from iot_pipeline.cleaning import CleaningPolicy, DeadLetter, clean_batch
from iot_pipeline.cleaning.rules import DUPLICATE
from iot_pipeline.processing.dead_letters import send_dead_letters
from iot_pipeline.processing.documents import reading_action
from iot_pipeline.processing.ranges import RangeTask
from iot_pipeline.processing.reader import read_range
from iot_pipeline.processing.state_store import load_states, save_states
from iot_pipeline.settings import Settings
from iot_pipeline.storage import BulkPolicy, SearchStore, index_all

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RangeReport:
    """What processing one range did."""

    batch_id: str
    range: str
    records: int
    indexed: int
    valid: int
    flagged: int
    duplicates: int
    dead_letters: int
    retried_items: int
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def process_range(
    settings: Settings,
    store: SearchStore,
    state_client: redis.Redis,
    task: RangeTask,
    policy: CleaningPolicy | None = None,
    bulk: BulkPolicy | None = None,
) -> RangeReport:
    """Process [start, end) of one partition; safe to repeat (same input, same store)."""
    started = time.monotonic()
    offsets = task.range
    records = read_range(settings, offsets)
    states = load_states(state_client, settings.search_index_prefix, offsets)
    before = copy.deepcopy(states)
    result = clean_batch(records, states, task.ingest_time, policy or CleaningPolicy())

    # A duplicate is the same event again: the store already holds it under its id.
    keep = [r for r in result.readings if DUPLICATE not in r.flags]
    by_id = {r.reading.event_id: r for r in keep}
    actions = [
        reading_action(settings.search_index_prefix, r, task.batch_id, task.ingest_time)
        for r in keep
    ]
    report = index_all(store, actions, bulk or BulkPolicy())
    letters = list(result.dead_letters)
    for failure in report.rejected:
        rejected = by_id[failure.action.id]
        letters.append(
            DeadLetter(
                rejected.source,
                "index_rejected",
                "index",
                f"{failure.error_type}: {failure.reason}",
            )
        )
    send_dead_letters(settings, letters, task.batch_id, task.ingest_time)
    # Only now is every record of the range indexed or dead-lettered: move the state on.
    save_states(state_client, settings.search_index_prefix, offsets, before, states)
    outcome = RangeReport(
        batch_id=task.batch_id,
        range=str(offsets),
        records=len(records),
        indexed=report.indexed,
        valid=sum(1 for r in keep if r.valid),
        flagged=sum(1 for r in keep if r.flags),
        duplicates=len(result.readings) - len(keep),
        dead_letters=len(letters),
        retried_items=report.retries,
        seconds=round(time.monotonic() - started, 3),
    )
    log.info("processed %s", outcome.as_dict())
    return outcome
