"""The range's own work, before any rule across readings: the cleaner state it starts from
(a replay's warmed up from the nearest checkpoint), and its records cleaned and indexed in
bulk-sized slices while the next slice is cleaned."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

import redis

from iot_pipeline.cleaning import (
    BatchResult,
    CleaningPolicy,
    CleanReading,
    RawRecord,
    SensorState,
    clean_batch,
)
from iot_pipeline.cleaning.batch import unprocessable
from iot_pipeline.cleaning.metadata import Declaration
from iot_pipeline.cleaning.overrides import Override, apply_overrides
from iot_pipeline.contracts.ranges import RangeTask
from iot_pipeline.contracts.readings import reading_actions
from iot_pipeline.processing.overrides import settle_in_flight
from iot_pipeline.processing.reader import log_start, read_pieces
from iot_pipeline.processing.state_store import WARM_UP_LIMIT, load_replay_states
from iot_pipeline.settings import Settings
from iot_pipeline.storage import BulkPolicy, IndexAction, IndexReport, SearchStore, index_all
from iot_pipeline.vocabulary import DUPLICATE

log = logging.getLogger(__name__)


def replay_states(
    settings: Settings,
    state_client: redis.Redis,
    task: RangeTask,
    policy: CleaningPolicy,
    declared: dict[str, Declaration],
) -> dict[str, SensorState]:
    """The state the original run had at the replayed range's start (see state_store)."""
    offsets = task.range
    origin = load_replay_states(
        state_client,
        settings.search_index_prefix,
        offsets,
        task.batch_id,
        lambda: log_start(settings, offsets),
    )
    states, position = origin.states, origin.offset
    if offsets.start - position > WARM_UP_LIMIT:
        log.warning(
            "replay of %s: nearest checkpoint is %d records back; starting from empty state "
            "(flags of the first readings per sensor may differ from the original run)",
            offsets,
            offsets.start - position,
        )
        return {}
    before = offsets.model_copy(update={"start": position, "end": offsets.start})
    for records in read_pieces(settings, before):
        # state only, nothing stored; calibrated as the replayed range will be
        clean_batch(records, states, task.ingest_time, policy, declared)
    if origin.offset < offsets.start:
        log.info("replay of %s: state warmed up from offset %d", offsets, origin.offset)
    return states


# Bulk requests in flight at once: one keeps the engine busy while we clean, the second
# lets it use its other core when it is ahead of us (measured by `make bench`).
BULK_SENDERS = 2


Cleaner = Callable[[list[RawRecord]], BatchResult]


def live_cleaner(
    records: list[RawRecord],
    *,
    states: dict[str, SensorState],
    ingest_time: datetime,
    policy: CleaningPolicy,
    declared: dict[str, Declaration],
) -> BatchResult:
    """The live path's cleaning: the range's records in order, through its partition's state."""
    return clean_batch(records, states, ingest_time, policy, declared)


def clean_and_index(
    settings: Settings,
    store: SearchStore,
    task: RangeTask,
    records: list[RawRecord],
    clean: Cleaner,
    bulk: BulkPolicy,
    publish: Callable[[list[IndexAction], IndexReport], object] | None = None,
    overrides: list[Override] | None = None,
) -> tuple[BatchResult, list[CleanReading], IndexReport]:
    """Clean bulk-sized slices in order and index each while the next one is cleaned; then
    `publish` what each slice stored (the live feed).

    The engine's work and ours overlap (the sender thread waits on the socket without the
    GIL); cleaning stays sequential, so the flags are those of one pass over the range.
    """
    result = BatchResult()
    keep: list[CleanReading] = []
    report = IndexReport()
    with ThreadPoolExecutor(max_workers=BULK_SENDERS, thread_name_prefix="bulk") as sender:
        pending: list[tuple[Future[IndexReport], list[IndexAction]]] = []
        try:
            for start in range(0, len(records), bulk.max_docs):
                part = clean(records[start : start + bulk.max_docs])
                part.readings = apply_overrides(part.readings, overrides or [])
                result.readings += part.readings
                result.dead_letters += part.dead_letters
                # A duplicate is the same event again: the store already holds it under its id.
                fresh = [r for r in part.readings if DUPLICATE not in r.flags]
                built = reading_actions(
                    settings.search_index_prefix, fresh, task.batch_id, task.ingest_time
                )
                if built.failed:
                    broken = {id(clean) for clean, _ in built.failed}
                    fresh = [r for r in fresh if id(r) not in broken]
                    result.dead_letters += [
                        unprocessable(clean.source, "document", exc) for clean, exc in built.failed
                    ]
                keep += fresh
                pending.append(
                    (sender.submit(index_all, store, built.actions, bulk), built.actions)
                )
            for done, actions in pending:
                part_report = done.result()
                if publish is not None:
                    publish(actions, part_report)
                report.indexed += part_report.indexed
                report.rejected += part_report.rejected
                report.retries += part_report.retries
        except BaseException:
            for future, _ in pending:
                future.cancel()
            raise
    return result, keep, report


def sensors_of(records: list[RawRecord]) -> set[str] | None:
    """The sensors of a range, from the records' keys (the sensor ids); None (every sensor)
    when a record has no key."""
    sensors = set()
    for record in records:
        if not record.key:
            return None
        sensors.add(record.key.decode("utf-8", "replace"))
    return sensors


def settle_in_flight_readings(
    settings: Settings, store: SearchStore, stored: list[CleanReading], bulk: BulkPolicy
) -> None:
    """Overrides were created or deleted while this range was in flight: it cleaned with
    the overrides of before, and the new ones' settlement may have run before these readings
    were stored. Bring them to the overrides in force now (idempotent: a settlement that did
    see them changes nothing more)."""
    spans: dict[str, tuple[float, float]] = {}
    for clean in stored:
        sensor, moment = clean.reading.sensor_id, clean.reading.event_time.timestamp()
        low, high = spans.get(sensor, (moment, moment))
        spans[sensor] = (min(low, moment), max(high, moment))
    changed, written = settle_in_flight(
        store, settings.search_index_prefix, spans, settings.sensor_sample_interval_seconds, bulk
    )
    log.info(
        "overrides changed while the range was in flight: %d readings brought to them, "
        "%d windows written",
        changed,
        written,
    )
