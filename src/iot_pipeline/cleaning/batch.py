"""Clean a batch of raw Kafka records into flagged readings and dead letters."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from iot_pipeline.cleaning.metadata import Declaration, activity_flags, calibrated
from iot_pipeline.cleaning.rules import (
    Rejection,
    key_matches,
    normalise_time,
    normalise_unit,
    not_in_future,
    parse,
    physical_range,
    plausible_time,
    within_retention,
)
from iot_pipeline.cleaning.state import (
    Hindsight,
    SensorState,
    evict_idle,
    open_plateau,
    sequential_checks,
)
from iot_pipeline.schema import SensorReading
from iot_pipeline.vocabulary import (
    INVALIDATING,
    LEVEL_1,
    LEVEL_2,
    LEVEL_3,
    QC_CHECKED,
    QC_QUESTIONED,
    QC_REJECTED,
    QC_SCREENED,
    QC_VALID,
    UNPROCESSABLE,
    Qc,
)


@dataclass(frozen=True)
class RawRecord:
    """One record as read from Kafka, with its coordinates."""

    value: bytes
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    timestamp: float | None = None  # when it reached Kafka (epoch seconds), if known
    # A record replayed from the dead-letter topic: where it came from (topic, partition,
    # offset) and why it was dead-lettered, from its `dlq.*` headers.
    source: tuple[str, int, int] | None = None
    letter_reason: str | None = None

    def reference_time(self, ingest_time: datetime) -> datetime:
        """The clock a reading is judged against: when its record reached Kafka (so a replay
        judges it as the first run did), never later than the batch's own clock."""
        if self.timestamp is None or self.timestamp <= 0:
            return ingest_time
        try:
            produced = datetime.fromtimestamp(self.timestamp, UTC)
        except (OverflowError, OSError, ValueError):
            return ingest_time
        return min(produced, ingest_time)


@dataclass(frozen=True)
class DeadLetter:
    """A record that cannot become a reading: original bytes, reason, stage and source."""

    record: RawRecord
    reason: str
    stage: str
    detail: str
    error_type: str | None = None  # the exception's class, for `unprocessable` letters


@dataclass(frozen=True)
class CleanReading:
    """A reading in canonical units with its quality flags; `valid` ones feed aggregates."""

    reading: SensorReading
    flags: tuple[str, ...]
    source: RawRecord
    original_value: float
    original_unit: str
    # whether the sensor had a recent valid reading for the level-2 checks to judge it by
    screened: bool = False
    # Flags this reading puts on earlier ones of its sensor (the first reading judged stuck
    # on the rest of its run, the reading after a sparse sensor's spike on the spike); they
    # may be stored already: processing.hindsight flags them there.
    hindsight: tuple[Hindsight, ...] = ()
    # The sensor's sampling interval (seconds) and resolution as the cleaner has learned them
    # so far (cleaning.state), None until it has; completeness is counted at that interval.
    interval: float | None = None
    resolution: float | None = None
    # an operator's verdict (G or B) when an override changes the automatic one
    # (cleaning.overrides); the flags stay, so the automatic verdict stays knowable
    override: Qc | None = None
    # What an operator declared of the sensor (cleaning.metadata): its sampling interval,
    # which completeness counts at instead of the learned one, and the offset added to the
    # canonical value (`original_value` keeps what the sensor sent). None: nothing declared.
    declared_interval: float | None = None
    calibration_offset: float | None = None
    # The span (first, newest event time) of the run of identical values this reading belongs
    # to, when that run is for the neighbours to judge (cleaning.plateau_rule); else None.
    plateau: tuple[float, float] | None = None

    @property
    def counted_interval(self) -> float | None:
        """The interval completeness counts this reading's sensor at: the declared one,
        else the learned one."""
        return self.declared_interval or self.interval

    @property
    def valid(self) -> bool:
        if self.override is not None:
            return self.override in QC_VALID
        return not INVALIDATING.intersection(self.flags)

    @property
    def qc(self) -> Qc:
        return self.override or self.auto_qc

    @property
    def auto_qc(self) -> Qc:
        """The verdict of the rules alone, whatever an operator said."""
        return qc_verdict(self.flags, self.screened)


_QUESTIONING = LEVEL_2 | LEVEL_3


def qc_verdict(flags: Iterable[str], screened: bool) -> Qc:
    """The reading's quality-control descriptor (vocabulary.Qc) from its flags."""
    found = tuple(flags)
    if found:  # most readings have none
        if not LEVEL_1.isdisjoint(found):
            return QC_REJECTED
        if not _QUESTIONING.isdisjoint(found):
            return QC_QUESTIONED
    return QC_SCREENED if screened else QC_CHECKED


@dataclass(frozen=True)
class CleaningPolicy:
    """Tolerances of the cleaner.

    `allowed_lateness` None: no reading is too late. `retention_days` None: no reading is
    beyond retention; otherwise readings before the first kept day (counted back from the
    batch's clock, today included) are dead letters.
    """

    allowed_lateness: timedelta | None = None
    max_clock_skew: timedelta = timedelta(minutes=5)
    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_ahead: timedelta = timedelta(hours=24)
    retention_days: int | None = None

    def horizon(self, ingest_time: datetime) -> datetime | None:
        """Start of the oldest day still kept, for a batch run at `ingest_time`."""
        if self.retention_days is None:
            return None
        today = ingest_time.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=self.retention_days - 1)

    def idle_limit(self) -> timedelta | None:
        """How long a silent sensor's state is kept: a reading older than the retention (or
        the lateness limit) is refused anyway. None: for ever."""
        if self.retention_days is not None:
            return timedelta(days=self.retention_days)
        return self.allowed_lateness


@dataclass
class BatchResult:
    """What a batch became."""

    readings: list[CleanReading] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def clean_batch(
    records: Iterable[RawRecord],
    states: MutableMapping[str, SensorState],
    ingest_time: datetime,
    policy: CleaningPolicy = CleaningPolicy(),
    declarations: Mapping[str, Declaration] | None = None,
) -> BatchResult:
    """Apply every rule; `states` is read and updated per sensor; `declarations` (by sensor
    id) are what operators declared of their sensors.

    The rules of one reading alone run in Kafka order; the rules that need the sensor's past
    then judge the batch's readings in event-time order (Kafka order among equal times), so
    the order in which a batch's readings arrived changes no verdict. The result keeps Kafka
    order.

    Each record is guarded: whatever a step raises, that record becomes an `unprocessable`
    dead letter naming the step and the exception, and the batch goes on.
    """
    horizon = policy.horizon(ingest_time)
    outcomes: list[CleanReading | DeadLetter | _Prepared] = []
    for record in records:
        step = Step()
        try:
            outcomes.append(
                _prepare(record, ingest_time, policy, horizon, step, declarations or {})
            )
        except Exception as exc:  # the guard: nothing a record does stops a batch
            outcomes.append(unprocessable(record, step.name, exc))
    lateness = policy.allowed_lateness.total_seconds() if policy.allowed_lateness else math.inf
    waiting = [(o.epoch, n, o) for n, o in enumerate(outcomes) if isinstance(o, _Prepared)]
    ingest_epoch = ingest_time.timestamp()
    waiting.sort(key=lambda item: item[:2])
    for _, n, prepared in waiting:
        try:
            outcomes[n] = _judge(prepared, states, ingest_epoch, lateness)
        except Exception as exc:  # the guard, as above
            outcomes[n] = unprocessable(prepared.record, "state", exc)
    result = BatchResult()
    for outcome in outcomes:
        if isinstance(outcome, DeadLetter):
            result.dead_letters.append(outcome)
        elif isinstance(outcome, CleanReading):
            result.readings.append(outcome)
    idle = policy.idle_limit()
    if idle is not None:
        evict_idle(states, ingest_time.timestamp(), idle.total_seconds())
    return result


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A reading through the rules that look at it alone, waiting for its sensor's past."""

    record: RawRecord
    parsed: SensorReading
    reading: SensorReading
    flags: tuple[str, ...]
    measured: float
    declared: Declaration | None
    offset: float | None
    epoch: float  # the event time, epoch seconds


class Step:
    """The step a record is in, named in its dead letter if that step raises."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = "parse"


def unprocessable(record: RawRecord, stage: str, exc: BaseException) -> DeadLetter:
    """The dead letter of a record whose processing raised `exc` in `stage`."""
    message = str(exc).replace("\n", " ")[:300]
    return DeadLetter(
        record, UNPROCESSABLE, stage, f"{type(exc).__name__}: {message}", type(exc).__name__
    )


def _prepare(
    record: RawRecord,
    ingest_time: datetime,
    policy: CleaningPolicy,
    horizon: datetime | None,
    step: Step,
    declarations: Mapping[str, Declaration],
) -> _Prepared | DeadLetter:
    parsed = parse(record.value)
    if isinstance(parsed, Rejection):
        return _dead(record, parsed)
    step.name = "key"
    mismatch = key_matches(record.key, parsed)
    if mismatch is not None:
        return _dead(record, mismatch)
    step.name = "time"
    reference = record.reference_time(ingest_time)
    implausible = plausible_time(parsed, policy.earliest, reference, policy.max_ahead)
    if implausible is not None:
        return _dead(record, implausible)
    step.name = "normalise"
    normalised = normalise_unit(parsed)
    if isinstance(normalised, Rejection):
        return _dead(record, normalised)
    reading, flags = normalised
    reading = normalise_time(reading)
    beyond = within_retention(reading, horizon)
    if beyond is not None:
        return _dead(record, beyond)
    measured = reading.value  # as the sensor measured it: its decimals show its resolution
    declared = declarations.get(reading.sensor_id)
    offset = None if declared is None else declared.offset_for(reading.metric)
    if offset is not None:
        step.name = "calibrate"
        reading = reading.model_copy(update={"value": calibrated(reading.value, offset)})
    step.name = "rules"
    flags += physical_range(reading)
    flags += not_in_future(reading, reference, policy.max_clock_skew)
    epoch = reading.event_time.timestamp()
    flags += activity_flags(declared, epoch)
    return _Prepared(record, parsed, reading, flags, measured, declared, offset, epoch)


def _judge(
    prepared: _Prepared,
    states: MutableMapping[str, SensorState],
    ingest_epoch: float,
    lateness: float,
) -> CleanReading:
    """The rules that need the sensor's past (cleaning.state), and the reading they make;
    `ingest_epoch`: the batch's ingest time, epoch seconds."""
    reading, flags, declared = prepared.reading, prepared.flags, prepared.declared
    state = states.get(reading.sensor_id)
    if state is None:
        state = states[reading.sensor_id] = SensorState()
    state.touched = max(state.touched, ingest_epoch)
    epoch = prepared.epoch
    screened = state.has_reference(epoch)
    found, hindsight = sequential_checks(
        state,
        reading.event_id,
        reading.metric,
        epoch,
        reading.value,
        lateness,
        trusted=not INVALIDATING.intersection(flags),
        measured=prepared.measured,
    )
    return CleanReading(
        reading,
        flags + found,
        prepared.record,
        prepared.parsed.value,
        prepared.parsed.unit,
        screened,
        hindsight,
        state.interval(),
        state.resolution(),
        declared_interval=None if declared is None else declared.interval_s,
        calibration_offset=prepared.offset,
        plateau=None
        if flags or found
        else open_plateau(state, reading.metric, epoch, reading.value),
    )


def _dead(record: RawRecord, rejection: Rejection) -> DeadLetter:
    return DeadLetter(record, rejection.reason, rejection.stage, rejection.detail)
