"""One offset range, end to end: read, clean, index, dead-letter, checkpoint."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import redis

from iot_pipeline.aggregation import recompute_windows, touched_windows
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
from iot_pipeline.cleaning.plateau_rule import Plateau
from iot_pipeline.cleaning.state import frozen_by_neighbours
from iot_pipeline.contracts.live import publish_stored
from iot_pipeline.contracts.metadata import load_declarations
from iot_pipeline.contracts.ranges import RangeTask
from iot_pipeline.contracts.readings import reading_actions, reading_id
from iot_pipeline.errors import PermanentError
from iot_pipeline.indices import readings_index
from iot_pipeline.processing.buddy_check import buddy_updates
from iot_pipeline.processing.cross_metric import cross_metric_updates
from iot_pipeline.processing.dead_letters import deliver, index_rejections
from iot_pipeline.processing.hindsight import hindsight_updates
from iot_pipeline.processing.letter_replay import SourceStates
from iot_pipeline.processing.overrides import generation as overrides_generation
from iot_pipeline.processing.overrides import load_active, settle_in_flight
from iot_pipeline.processing.plateau_check import frozen_plateaus
from iot_pipeline.processing.reader import log_start, read_pieces, read_range
from iot_pipeline.processing.registry import registry_actions
from iot_pipeline.processing.state_store import (
    WARM_UP_LIMIT,
    load_replay_states,
    load_states,
    save_replay_states,
    save_states,
)
from iot_pipeline.settings import Settings
from iot_pipeline.storage import (
    BulkPolicy,
    IndexAction,
    IndexReport,
    SearchStore,
    index_all,
    refuse_rejections,
)
from iot_pipeline.vocabulary import DUPLICATE

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
    end: int  # where the range really ended: the planned end, or less when cut by bytes
    records: int
    indexed: int
    valid: int
    flagged: int
    duplicates: int
    dead_letters: int  # records of the range that are dead letters
    dead_letters_new: int  # of which written now (the others were, by an earlier run)
    still_dead: int  # records replayed from the dead-letter topic that fail again
    retried_items: int
    windows: int
    cross_metric_changes: int
    spatial_changes: int  # readings whose buddy-check verdict changed
    seconds: float
    stages: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class InjectedFault(PermanentError):
    """A failure asked for by FAULT_INJECTION_MARKER (tests and drills)."""


def cleaning_policy(settings: Settings) -> CleaningPolicy:
    """The cleaner's tolerances from the settings."""
    lateness = settings.allowed_lateness_hours
    return CleaningPolicy(
        allowed_lateness=timedelta(hours=lateness) if lateness else None,
        earliest=datetime.combine(settings.event_time_earliest, datetime.min.time(), UTC),
        max_ahead=timedelta(hours=settings.event_time_max_ahead_hours),
        retention_days=settings.recompute_horizon_days,
    )


def process_range(
    settings: Settings,
    store: SearchStore,
    state_client: redis.Redis,
    task: RangeTask,
    policy: CleaningPolicy | None = None,
    bulk: BulkPolicy | None = None,
    aggregate: bool = True,
) -> RangeReport:
    """Process [start, end) of one partition; safe to repeat (same input, same store).

    `aggregate=False` leaves the touched windows to a later recomputation (which reads the
    store, so it gives the same result whenever it runs).
    """
    started = time.monotonic()
    clock = _Stopwatch()
    offsets = task.range
    records = read_range(settings, offsets, max_bytes=settings.etl_max_bytes_per_range)
    if records and sum(len(r.value) for r in records) >= settings.etl_max_bytes_per_range:
        # cut short by the byte cap: this task owns the prefix it holds, the rest waits
        offsets = offsets.model_copy(update={"end": records[-1].offset + 1})
    marker = settings.fault_injection_marker.encode()
    if marker and any(marker in r.value for r in records):
        raise InjectedFault(f"{offsets} holds a record with the fault injection marker")
    clock.lap("read")
    policy = policy or cleaning_policy(settings)
    # operators' declarations of their sensors, as they are now (never retroactive)
    declared = load_declarations(store, settings.search_index_prefix)
    before: dict[str, SensorState] = {}
    if task.replay and offsets.topic == settings.dead_letter_topic:
        # each letter through its source partition's state (processing.letter_replay)
        states: dict[str, SensorState] = {}
        sources = SourceStates(settings, state_client, task.ingest_time, policy, declared)
        clean: Cleaner = sources.clean
    else:
        if task.replay:
            states = _replay_states(settings, state_client, task, policy, declared)
        else:
            states = load_states(state_client, settings.search_index_prefix, offsets)
            before = copy.deepcopy(states)
        clean = partial(
            _clean, states=states, ingest_time=task.ingest_time, policy=policy, declared=declared
        )
    clock.lap("state")
    bulk = bulk or BulkPolicy()
    publish = None
    if settings.live_publish and not task.replay:  # a replay is old news for live clients
        publish = partial(publish_stored, state_client, settings.search_index_prefix)
    # operators' G/B lists: those of the range's sensors (all when a record has no key), and
    # the generation they were loaded at (see _settle_in_flight)
    prefix = settings.search_index_prefix
    seen_generation = overrides_generation(state_client, prefix)
    overrides = load_active(store, prefix, sensors=_sensors_of(records))
    result, keep, report = _clean_and_index(
        settings, store, task, records, clean, bulk, publish, overrides
    )
    clock.lap("clean_index")
    by_id = {reading_id(r.reading.sensor_id, r.reading.event_id): r for r in keep}
    # 409: the store holds the event already (an older duplicate, a retried range, a
    # replay): stored, not a dead letter, and the stored copy stays as it is
    stored_before = sum(1 for failure in report.rejected if failure.conflict)
    rejected = [failure for failure in report.rejected if not failure.conflict]
    refused = {failure.action.id for failure in rejected}
    stored = [r for i, r in by_id.items() if i not in refused] if refused else keep
    letters = result.dead_letters + index_rejections(rejected, by_id)
    delivered = deliver(settings, state_client, letters, task.batch_id, task.ingest_time)
    clock.lap("dead_letters")
    _update_registry(settings, store, stored, task, bulk)
    clock.lap("registry")
    if stored:  # searchable before anything reads them (overrides, rules, windows)
        store.refresh(
            ",".join(sorted({readings_index(prefix, r.reading.event_time) for r in stored}))
        )
    if overrides_generation(state_client, prefix) != seen_generation:
        _settle_in_flight(settings, store, stored, bulk)
    clock.lap("overrides")
    windows, cross_flagged, spatial_flagged, frozen = (
        _update_aggregates(
            settings, store, stored, bulk, state_client, f"{offsets.topic}:{offsets.partition}"
        )
        if aggregate
        else (0, 0, 0, [])
    )
    for run in frozen:  # the neighbours' verdicts, for the runs' next and late readings
        if run.sensor_id in states:
            frozen_by_neighbours(states[run.sensor_id], run.start, run.end, run.value)
    clock.lap("aggregate")
    # Only now is every record of the range indexed or dead-lettered: move the state on.
    if task.replay:
        save_replay_states(
            state_client, settings.search_index_prefix, offsets, task.batch_id, states
        )
    else:
        save_states(state_client, settings.search_index_prefix, offsets, before, states)
    outcome = RangeReport(
        batch_id=task.batch_id,
        range=str(offsets),
        end=offsets.end,
        records=len(records),
        indexed=report.indexed,
        valid=sum(1 for r in keep if r.valid),
        flagged=sum(1 for r in keep if r.flags),
        duplicates=len(result.readings) - len(keep) + stored_before,
        dead_letters=delivered.letters,
        dead_letters_new=delivered.new,
        still_dead=delivered.still_dead,
        retried_items=report.retries,
        windows=windows,
        cross_metric_changes=cross_flagged,
        spatial_changes=spatial_flagged,
        seconds=round(time.monotonic() - started, 3),
        stages=clock.laps,
    )
    log.info("processed %s", outcome.as_dict())
    return outcome


def _replay_states(
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


def _clean(
    records: list[RawRecord],
    *,
    states: dict[str, SensorState],
    ingest_time: datetime,
    policy: CleaningPolicy,
    declared: dict[str, Declaration],
) -> BatchResult:
    """The live path's cleaning: the range's records in order, through its partition's state."""
    return clean_batch(records, states, ingest_time, policy, declared)


def _clean_and_index(
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


def _sensors_of(records: list[RawRecord]) -> set[str] | None:
    """The sensors of a range, from the records' keys (the sensor ids); None (every sensor)
    when a record has no key."""
    sensors = set()
    for record in records:
        if not record.key:
            return None
        sensors.add(record.key.decode("utf-8", "replace"))
    return sensors


def _settle_in_flight(
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


def _update_registry(
    settings: Settings,
    store: SearchStore,
    stored: list[CleanReading],
    task: RangeTask,
    bulk: BulkPolicy,
) -> None:
    """One scripted upsert per sensor of the range (see processing.registry)."""
    actions = registry_actions(
        settings.search_index_prefix, stored, task.batch_id, task.ingest_time
    )
    if actions:
        refuse_rejections(index_all(store, actions, bulk), "sensor registry updates")


def _update_aggregates(
    settings: Settings,
    store: SearchStore,
    kept: list[CleanReading],
    bulk: BulkPolicy,
    state: redis.Redis | None = None,
    source: str = "",
) -> tuple[int, int, int, list[Plateau]]:
    """Flags found in hindsight (the cleaner's and the neighbours' stuck plateaus),
    cross-metric and buddy-check flags, then every touched window recomputed from the store.

    Returns (windows written, readings whose cross-metric flag changed, readings whose
    spatial flag changed, the plateaus the neighbours judged stuck).

    No lock: each task makes its own readings searchable before it reads anything, and
    windows are written with optimistic concurrency (see aggregation.recompute), so ranges
    of different partitions aggregate in parallel and the last writer has read the most.
    """
    windows = touched_windows(kept)
    if not windows:
        return 0, 0, 0, []
    prefix = settings.search_index_prefix  # the range's readings were refreshed already
    interval = settings.sensor_sample_interval_seconds
    frozen = frozen_plateaus(store, prefix, kept, state, source)
    stuck = [(run.sensor_id, run.stuck()) for run in frozen]
    late, reached = hindsight_updates(store, prefix, kept, stuck)
    if late:
        refuse_rejections(index_all(store, late, bulk, refresh=True), "hindsight flag updates")
    flags, changed = cross_metric_updates(store, prefix, kept, interval)
    if flags:
        flagged = index_all(store, flags, bulk, refresh=True)
        refuse_rejections(flagged, "cross-metric flag updates")
    spatial, moved = buddy_updates(store, prefix, kept)
    if spatial:
        refuse_rejections(index_all(store, spatial, bulk, refresh=True), "spatial flag updates")
    touched = windows | reached | changed | moved
    report = recompute_windows(store, prefix, touched, interval, bulk)
    return report.written, len(flags), len(spatial), frozen
