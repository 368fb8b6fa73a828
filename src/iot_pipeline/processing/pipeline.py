"""One offset range, end to end: read, clean, index, dead-letter, checkpoint."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass
from datetime import timedelta

import redis

from iot_pipeline.aggregation import recompute_windows, touched_windows
from iot_pipeline.cleaning import CleaningPolicy, CleanReading, DeadLetter, clean_batch
from iot_pipeline.cleaning.rules import DUPLICATE
from iot_pipeline.processing.dead_letters import send_dead_letters
from iot_pipeline.processing.documents import reading_action
from iot_pipeline.processing.ranges import RangeTask
from iot_pipeline.processing.reader import read_range
from iot_pipeline.processing.state_store import load_states, save_states
from iot_pipeline.settings import Settings
from iot_pipeline.storage import (
    BulkPolicy,
    IndexAction,
    PermanentStoreError,
    SearchStore,
    index_all,
)

log = logging.getLogger(__name__)


class _Stopwatch:
    """Seconds spent in each stage, for the report and the logs."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.laps[stage] = round(now - self._last, 3)
        self._last = now


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
    windows: int
    seconds: float
    stages: dict[str, float]

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
    clock = _Stopwatch()
    offsets = task.range
    records = read_range(settings, offsets)
    clock.lap("read")
    states = load_states(state_client, settings.search_index_prefix, offsets)
    before = copy.deepcopy(states)
    policy = policy or CleaningPolicy(
        allowed_lateness=timedelta(hours=settings.allowed_lateness_hours)
    )
    result = clean_batch(records, states, task.ingest_time, policy)
    clock.lap("clean")

    # A duplicate is the same event again: the store already holds it under its id.
    keep = [r for r in result.readings if DUPLICATE not in r.flags]
    by_id = {r.reading.event_id: r for r in keep}
    actions = [
        reading_action(settings.search_index_prefix, r, task.batch_id, task.ingest_time)
        for r in keep
    ]
    report = index_all(store, actions, bulk or BulkPolicy())
    clock.lap("index")
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
    clock.lap("dead_letters")
    windows = _update_aggregates(settings, store, state_client, keep, actions, bulk)
    clock.lap("aggregate")
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
        windows=windows,
        seconds=round(time.monotonic() - started, 3),
        stages=clock.laps,
    )
    log.info("processed %s", outcome.as_dict())
    return outcome


AGGREGATION_LOCK_SECONDS = 60


def _update_aggregates(
    settings: Settings,
    store: SearchStore,
    state_client: redis.Redis,
    kept: list[CleanReading],
    actions: list[IndexAction],
    bulk: BulkPolicy | None,
) -> int:
    """Recompute every window the range touched, from the store; returns windows written.

    Windows of a district gather sensors from several partitions, so recomputations are
    serialised by a Redis lock: each one reads the store after its own readings are visible
    and no stale result can overwrite a newer one.
    """
    windows = touched_windows(kept)
    if not windows:
        return 0
    prefix = settings.search_index_prefix
    lock = state_client.lock(
        f"{prefix}:aggregation-lock", timeout=AGGREGATION_LOCK_SECONDS, blocking_timeout=600
    )
    with lock:
        store.refresh(",".join(sorted({a.index for a in actions})) or f"{prefix}-readings-*")
        updates = recompute_windows(store, prefix, windows, settings.sensor_sample_interval_seconds)
        report = index_all(store, updates, bulk or BulkPolicy())
    if report.rejected:
        first = report.rejected[0]
        raise PermanentStoreError(
            f"{len(report.rejected)} aggregate updates refused, first {first.action.id}: "
            f"{first.status} {first.reason}"
        )
    return report.indexed
