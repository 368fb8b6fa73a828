"""One offset range, end to end, as a list of named stages over one context:

    read          the range's records from Kafka (cut short by the byte cap)
    state         the operators' declarations and the cleaner state the range starts from
    clean_index   clean in bulk-sized slices, each indexed while the next is cleaned
    dead_letters  the records that cannot be readings, and the readings the store refused
    registry      one upsert per sensor of the range
    overrides     the range's readings searchable; overrides changed in flight settled
    hindsight     stuck plateaus judged by the neighbours, flags found in hindsight
    cross_metric  PM2.5 above PM10 at one station, across partitions
    buddy         each reading against its neighbours (the spatial check)
    windows       every touched window brought up to date: a sensor minute the range holds
                  in full from its readings, the rest recomputed from the store
    checkpoint    the cleaner state moved on: only now is every record stored or a letter

Each stage reads what the earlier ones left in the `RangeContext` and is timed by
`process_range` (the report's `stages`). With `aggregate=False` the four stages across
readings (`ACROSS_READINGS`) are left to a later recomputation. A range of the ETL
(`RangeTask.per_run`) writes only its own sensors' windows and leaves what spans partitions,
the buddy check and the district windows, to the run's settle (`across_partitions`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import redis

from iot_pipeline.aggregation import recompute_windows, touched_windows
from iot_pipeline.aggregation.minutes import MinuteStats, from_readings
from iot_pipeline.aggregation.windows import Window
from iot_pipeline.cleaning import BatchResult, CleaningPolicy, CleanReading, RawRecord, SensorState
from iot_pipeline.cleaning.state import frozen_by_neighbours
from iot_pipeline.contracts.live import publish_stored
from iot_pipeline.contracts.metadata import load_declarations
from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.contracts.readings import reading_id
from iot_pipeline.contracts.reports import RangeReport
from iot_pipeline.errors import PermanentError
from iot_pipeline.indices import readings_index
from iot_pipeline.processing import across_partitions
from iot_pipeline.processing.buddy_check import buddy_updates, touched_slots
from iot_pipeline.processing.cross_metric import cross_metric_updates
from iot_pipeline.processing.dead_letters import Delivery, deliver, index_rejections
from iot_pipeline.processing.hindsight import hindsight_updates
from iot_pipeline.processing.indexing import (
    Cleaner,
    clean_and_index,
    live_cleaner,
    replay_states,
    sensors_of,
    settle_in_flight_readings,
)
from iot_pipeline.processing.letter_replay import SourceStates
from iot_pipeline.processing.overrides import generation as overrides_generation
from iot_pipeline.processing.overrides import load_active
from iot_pipeline.processing.plateau_check import frozen_plateaus
from iot_pipeline.processing.reader import read_range
from iot_pipeline.processing.registry import registry_actions
from iot_pipeline.processing.state_store import load_states, save_replay_states, save_states
from iot_pipeline.settings import Settings
from iot_pipeline.storage import (
    BulkPolicy,
    IndexAction,
    IndexReport,
    SearchStore,
    index_all,
    refuse_rejections,
)

log = logging.getLogger(__name__)


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


@dataclass
class RangeContext:
    """What the stages of one range share: its inputs, and what each stage leaves behind."""

    settings: Settings
    store: SearchStore
    state_client: redis.Redis
    task: RangeTask
    policy: CleaningPolicy
    bulk: BulkPolicy = field(default_factory=BulkPolicy)
    cut: OffsetRange | None = None  # the range as cut short by the byte cap
    records: list[RawRecord] = field(default_factory=list)
    states: dict[str, SensorState] = field(default_factory=dict)
    loaded: dict[str, SensorState] = field(default_factory=dict)  # the checkpoint as read
    clean: Cleaner | None = None
    generation: int = 0  # of the overrides, when the range loaded them
    result: BatchResult = field(default_factory=BatchResult)
    keep: list[CleanReading] = field(default_factory=list)  # cleaned, not duplicates
    indexed: IndexReport = field(default_factory=IndexReport)
    stored: list[CleanReading] = field(default_factory=list)
    stored_before: int = 0  # readings the store held already (409)
    delivery: Delivery | None = None
    touched: set[Window] = field(default_factory=set)
    # windows whose stored readings changed after the range stored them (rules, overrides)
    rewritten: set[Window] = field(default_factory=set)
    settled_in_flight: bool = False
    cross_metric_changes: int = 0
    spatial_changes: int = 0
    windows: int = 0
    laps: dict[str, float] = field(default_factory=dict)

    @property
    def offsets(self) -> OffsetRange:
        """The range this task processes: the planned one, or its prefix the byte cap left."""
        return self.cut or self.task.range

    @property
    def prefix(self) -> str:
        return self.settings.search_index_prefix

    def write_flags(self, updates: list[IndexAction], touched: set[Window], what: str) -> int:
        """Write a rule's flag updates (searchable at once: the next rule reads them), and
        note the windows they touch; returns how many readings changed."""
        if updates:
            refuse_rejections(index_all(self.store, updates, self.bulk, refresh=True), what)
        self.touched |= touched
        if updates:
            self.rewritten |= touched
        return len(updates)

    def report(self, seconds: float) -> RangeReport:
        delivery = self.delivery or Delivery(0, 0, 0)
        return RangeReport(
            batch_id=self.task.batch_id,
            range=str(self.offsets),
            end=self.offsets.end,
            records=len(self.records),
            indexed=self.indexed.indexed,
            valid=sum(1 for r in self.keep if r.valid),
            flagged=sum(1 for r in self.keep if r.flags),
            duplicates=len(self.result.readings) - len(self.keep) + self.stored_before,
            dead_letters=delivery.letters,
            dead_letters_new=delivery.new,
            still_dead=delivery.still_dead,
            retried_items=self.indexed.retries,
            windows=self.windows,
            cross_metric_changes=self.cross_metric_changes,
            spatial_changes=self.spatial_changes,
            seconds=seconds,
            stages=self.laps,
        )


def _read(ctx: RangeContext) -> None:
    settings, offsets = ctx.settings, ctx.task.range
    ctx.records = read_range(settings, offsets, max_bytes=settings.etl_max_bytes_per_range)
    records = ctx.records
    if records and sum(len(r.value) for r in records) >= settings.etl_max_bytes_per_range:
        # cut short by the byte cap: this task owns the prefix it holds, the rest waits
        ctx.cut = offsets.model_copy(update={"end": records[-1].offset + 1})
    marker = settings.fault_injection_marker.encode()
    if marker and any(marker in r.value for r in records):
        raise InjectedFault(f"{ctx.offsets} holds a record with the fault injection marker")


def _state(ctx: RangeContext) -> None:
    settings, task = ctx.settings, ctx.task
    # operators' declarations of their sensors, as they are now (never retroactive)
    declared = load_declarations(ctx.store, ctx.prefix)
    if task.replay and task.range.topic == settings.dead_letter_topic:
        # each letter through its source partition's state (processing.letter_replay)
        sources = SourceStates(settings, ctx.state_client, task.ingest_time, ctx.policy, declared)
        ctx.clean = sources.clean
        return
    if task.replay:
        ctx.states = replay_states(settings, ctx.state_client, task, ctx.policy, declared)
    else:
        ctx.states = load_states(ctx.state_client, ctx.prefix, ctx.offsets)
        ctx.loaded = copy.deepcopy(ctx.states)
    ctx.clean = partial(
        live_cleaner,
        states=ctx.states,
        ingest_time=task.ingest_time,
        policy=ctx.policy,
        declared=declared,
    )


def _clean_index(ctx: RangeContext) -> None:
    if ctx.clean is None:
        raise RuntimeError("the state stage chooses the cleaner: it runs before clean_index")
    publish = None
    if ctx.settings.live_publish and not ctx.task.replay:  # a replay is old news for live
        publish = partial(publish_stored, ctx.state_client, ctx.prefix)
    # operators' G/B lists: those of the range's sensors (all when a record has no key), and
    # the generation they were loaded at (see the overrides stage)
    ctx.generation = overrides_generation(ctx.state_client, ctx.prefix)
    overrides = load_active(ctx.store, ctx.prefix, sensors=sensors_of(ctx.records))
    ctx.result, ctx.keep, ctx.indexed = clean_and_index(
        ctx.settings, ctx.store, ctx.task, ctx.records, ctx.clean, ctx.bulk, publish, overrides
    )


def _dead_letters(ctx: RangeContext) -> None:
    by_id = {reading_id(r.reading.sensor_id, r.reading.event_id): r for r in ctx.keep}
    # 409: the store holds the event already (an older duplicate, a retried range, a
    # replay): stored, not a dead letter, and the stored copy stays as it is
    ctx.stored_before = sum(1 for failure in ctx.indexed.rejected if failure.conflict)
    rejected = [failure for failure in ctx.indexed.rejected if not failure.conflict]
    refused = {failure.action.id for failure in rejected}
    ctx.stored = [r for i, r in by_id.items() if i not in refused] if refused else ctx.keep
    letters = ctx.result.dead_letters + index_rejections(rejected, by_id)
    task = ctx.task
    ctx.delivery = deliver(ctx.settings, ctx.state_client, letters, task.batch_id, task.ingest_time)


def _registry(ctx: RangeContext) -> None:
    """One scripted upsert per sensor of the range (see processing.registry)."""
    actions = registry_actions(ctx.prefix, ctx.stored, ctx.task.batch_id, ctx.task.ingest_time)
    if actions:
        refuse_rejections(index_all(ctx.store, actions, ctx.bulk), "sensor registry updates")


def _overrides(ctx: RangeContext) -> None:
    """The range's readings searchable before anything reads them (overrides, rules,
    windows); then, when overrides were created or deleted while the range was in flight,
    its readings brought to the overrides in force now."""
    if ctx.stored:
        indices = {readings_index(ctx.prefix, r.reading.event_time) for r in ctx.stored}
        ctx.store.refresh(",".join(sorted(indices)))
    if overrides_generation(ctx.state_client, ctx.prefix) != ctx.generation:
        settle_in_flight_readings(ctx.settings, ctx.store, ctx.stored, ctx.bulk)
        ctx.settled_in_flight = True


# The rules across readings and the windows: no lock between them. Each task made its own
# readings searchable before it reads anything, and windows are written with optimistic
# concurrency (see aggregation.recompute), so ranges of different partitions aggregate in
# parallel and the last writer has read the most.


def _hindsight(ctx: RangeContext) -> None:
    """Plateaus the neighbours judge stuck, and the flags the cleaner found in hindsight;
    the neighbours' verdicts go back into the cleaner state for the runs' next readings."""
    if not ctx.stored:
        return
    ctx.touched = touched_windows(ctx.stored)
    source = f"{ctx.offsets.topic}:{ctx.offsets.partition}"
    frozen = frozen_plateaus(ctx.store, ctx.prefix, ctx.stored, ctx.state_client, source)
    stuck = [(run.sensor_id, run.stuck()) for run in frozen]
    late, reached = hindsight_updates(ctx.store, ctx.prefix, ctx.stored, stuck)
    ctx.write_flags(late, reached, "hindsight flag updates")
    for run in frozen:
        if run.sensor_id in ctx.states:
            frozen_by_neighbours(ctx.states[run.sensor_id], run.start, run.end, run.value)


def _cross_metric(ctx: RangeContext) -> None:
    if not ctx.stored:
        return
    interval = ctx.settings.sensor_sample_interval_seconds
    flags, changed = cross_metric_updates(ctx.store, ctx.prefix, ctx.stored, interval)
    ctx.cross_metric_changes = ctx.write_flags(flags, changed, "cross-metric flag updates")


def _buddy(ctx: RangeContext) -> None:
    if not ctx.stored or ctx.task.per_run:  # per run: the windows stage hands the slots over
        return
    spatial, moved = buddy_updates(ctx.store, ctx.prefix, ctx.stored)
    ctx.spatial_changes = ctx.write_flags(spatial, moved, "spatial flag updates")


def _windows(ctx: RangeContext) -> None:
    touched = ctx.touched
    if ctx.task.per_run:
        # the partition's own sensors now; the districts and the buddy slots once per run
        slots = touched_slots(ctx.stored)
        across_partitions.defer(ctx.state_client, ctx.prefix, touched, slots)
        touched = {w for w in touched if w.scope == "sensor"}
    if not touched:
        return
    interval = ctx.settings.sensor_sample_interval_seconds
    known = _held_in_full(ctx)
    ctx.windows = recompute_windows(
        ctx.store, ctx.prefix, touched, interval, ctx.bulk, known
    ).written


def _held_in_full(ctx: RangeContext) -> dict[Window, MinuteStats]:
    """The sensor minutes whose readings are all in this range's memory, as their statistics
    (`recompute_windows` uses them for the windows not stored yet). A minute is left to the
    store when one of its readings was stored before (409: an earlier attempt, a duplicate
    beyond the cleaner's memory), when a rule or an operator's override changed a stored
    reading in it after the range stored it, or when overrides changed in flight."""
    if ctx.settled_in_flight:
        return {}
    stored, before = ctx.stored, []
    if ctx.stored_before:
        # every copy of such an event leaves its minute: the stored copy may lie in another
        conflicted = {f.action.id for f in ctx.indexed.rejected if f.conflict}
        before = [
            r for r in stored if reading_id(r.reading.sensor_id, r.reading.event_id) in conflicted
        ]
        left = {id(r) for r in before}
        stored = [r for r in stored if id(r) not in left]
    held = from_readings(stored)
    for window in touched_windows(before) | ctx.rewritten:
        held.pop(window, None)
    return held


def _checkpoint(ctx: RangeContext) -> None:
    """Only now is every record of the range indexed or dead-lettered: move the state on."""
    if ctx.task.replay:
        save_replay_states(ctx.state_client, ctx.prefix, ctx.offsets, ctx.task.batch_id, ctx.states)
    else:
        save_states(ctx.state_client, ctx.prefix, ctx.offsets, ctx.loaded, ctx.states)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[RangeContext], None]


STAGES = (
    Stage("read", _read),
    Stage("state", _state),
    Stage("clean_index", _clean_index),
    Stage("dead_letters", _dead_letters),
    Stage("registry", _registry),
    Stage("overrides", _overrides),
    Stage("hindsight", _hindsight),
    Stage("cross_metric", _cross_metric),
    Stage("buddy", _buddy),
    Stage("windows", _windows),
    Stage("checkpoint", _checkpoint),
)
ACROSS_READINGS = ("hindsight", "cross_metric", "buddy", "windows")
LOCAL_STAGES = tuple(stage for stage in STAGES if stage.name not in ACROSS_READINGS)


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

    `aggregate=False` leaves the rules across readings and the touched windows to a later
    recomputation (which reads the store, so it gives the same result whenever it runs).
    """
    started = time.monotonic()
    policy = policy or cleaning_policy(settings)
    ctx = RangeContext(settings, store, state_client, task, policy, bulk or BulkPolicy())
    for stage in STAGES if aggregate else LOCAL_STAGES:
        lap = time.monotonic()
        stage.run(ctx)
        ctx.laps[stage.name] = round(time.monotonic() - lap, 3)
    outcome = ctx.report(round(time.monotonic() - started, 3))
    log.info("processed %s", outcome.to_json())
    return outcome
