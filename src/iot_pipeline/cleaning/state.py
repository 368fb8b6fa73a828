"""Per-sensor state across batches, and the rules that need it (duplicates, lateness,
spikes, stuck values). The state is plain data so that it can live in Redis, never only in
a worker's memory."""

from __future__ import annotations

import base64
import hashlib
import itertools
import statistics
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from iot_pipeline.schema import METRICS
from iot_pipeline.vocabulary import DUPLICATE, RATE_OF_CHANGE, SPIKE, STUCK, TOO_LATE

# A reading further than this from the median of its sensor's recent valid readings is a spike
# (canonical units). Chosen well above noise plus an hour of the fastest normal change.
SPIKE_THRESHOLD = {
    "temperature": 7.0,
    "humidity": 25.0,
    "pm25": 45.0,
    "pm10": 100.0,
    "no2": 100.0,
    "o3": 120.0,
    "co": 2.0,
}
# Fastest physical change per minute; a jump from the previous valid reading beyond this
# (plus half the spike threshold for sensor noise) is flagged as a rate-of-change violation.
MAX_RATE_PER_MINUTE = {
    "temperature": 3.0,
    "humidity": 10.0,
    "pm25": 40.0,
    "pm10": 80.0,
    "no2": 80.0,
    "o3": 80.0,
    "co": 1.5,
}
RATE_WINDOW = 600.0  # only readings this close in time are compared
HISTORY = 8  # valid readings kept per sensor for the spike median
HISTORY_MAX_AGE = 2 * 3600.0  # older history says nothing about the present value...
# ...unless the sensor samples sparsely: its readings within this many of its own sampling
# intervals (the median gap of its history) still do, the newest REFERENCE_SPARSE of them.
# An hourly sensor is judged by its last three valid readings within five hours: on the
# simulator's clean hourly data their median is never further from the next reading than
# 5.1 degC, 12.6 %RH or a third of a pollutant's spike threshold, and a spike moves it
# further than the threshold.
REFERENCE_INTERVALS = 5.0
REFERENCE_SPARSE = 3
# Persistence ("stuck"), judged against the sensor's own quantisation step, sampling interval
# and history (docs/quality.md, "Persistence", has the figures that chose each number):
# - a fast sensor (sampling interval at most FAST_INTERVAL) whose signal moves many steps from
#   one sample to the next (its recent mean absolute change is at least FINE_STEPS steps) does
#   not repeat a value by chance: it is stuck from the STUCK_REPEATS-th identical value;
# - any other sensor only when its value has not changed for longer than its span of event
#   time: FAST_SPAN for a fast sensor, SLOW_FINE_SPAN for a slow one that moves FINE_STEPS
#   steps per sample, SLOW_COARSE_SPAN for a slow coarse one (whole degrees, whole percent) --
#   and never sooner than PLATEAU_MARGIN times the longest plateau it has shown and then left;
# - neighbours that move while the sensor does not judge it sooner (cleaning.plateau_rule);
# - a value at the metric's physical bound (relative humidity at saturation, a pollutant at
#   zero, below its detection limit) may plateau for days: never judged stuck.
STUCK_REPEATS = 3
FINE_STEPS = 20.0
STEP_PAIRS = 20  # the mean absolute change follows about this many recent pairs
LEARN_PAIRS = 5  # consecutive valid pairs before a sensor's steps are trusted
FAST_INTERVAL = 600.0
FAST_SPAN = 3 * 3600.0
SLOW_FINE_SPAN = 12 * 3600.0
SLOW_COARSE_SPAN = 48 * 3600.0
PLATEAU_MARGIN = 2.0
HUMIDITY_CEILING = 90.0  # %RH (see weather_plateau)
MELTING_POINT_BAND = 0.05  # degC either side of 0 (see weather_plateau)
# Grids (step, origin; canonical units) coarser than a value's decimals that a sensor's
# values may lie on, coarsest first: whole kelvin, whole degF, halves, half degF, quarters,
# fifths, tenths of a kelvin, tenths of a degF, twentieths, fiftieths. A value rounded to d
# decimals lies within half a unit of its d-th decimal from its grid point; a sensor on none
# of these has the resolution of its decimals. GRID_VALUES values on a grid before it is
# believed: a 0.1 degC sensor's values lie on the whole-degF grid by chance with a
# probability of about 0.18 each, 0.18**12 < 1e-8.
GRIDS = (
    (1.0, -0.15),
    (5.0 / 9.0, -160.0 / 9.0),
    (0.5, 0.0),
    (5.0 / 18.0, -160.0 / 9.0),
    (0.25, 0.0),
    (0.2, 0.0),
    (0.1, 0.05),
    (1.0 / 18.0, -160.0 / 9.0),
    (0.05, 0.0),
    (0.02, 0.0),
)
GRID_VALUES = 12
FROZEN_RUNS = 4
SPAN_END = 0.5  # seconds: a stuck span found in hindsight reaches its last reading
# A plateau is put to the neighbours (cleaning.plateau_rule) once it lasted this long
# (seconds of event time) and held its value for NEIGHBOUR_REPEATS readings: a working coarse
# sensor's noise holds it on one step for three readings now and then while the weather moves
# (in the simulator, 5% of coarse sensors' plateaus), for four far more rarely.
NEIGHBOUR_MIN_SPAN = 1800.0
NEIGHBOUR_REPEATS = 4  # recent runs judged stuck, remembered so that late readings join them
# Recent event ids kept per sensor, for duplicates: as 64-bit digests (8 bytes each, a
# collision among them about once in 10**17 readings). Older duplicates are caught by the
# store, which keeps the first copy of an event (readings are written with `create`).
SEEN_IDS = 128
# A reference contradicted by this many consecutive readings that agree among themselves
# (within the metric's spike threshold) is stale: a level the history missed (a reading
# accepted while there was nothing to judge it by, a frozen sensor's value, a relocation).
# Those readings become the reference; they stay flagged, as judged when they came.
SHIFT_CONFIRM = 3
SUSPECT_WIDTH = 0.5  # seconds: a spike found in hindsight is the reading at its event time


@dataclass(frozen=True)
class Hindsight:
    """A flag a reading puts on earlier readings of its sensor, which may be stored already:
    those with this value and an event time in [start, end)."""

    flag: str
    start: float
    end: float
    value: float


# A run judged stuck: first and last event time, its value, the event time of the reading
# after it (another value; None while unknown)
Frozen = tuple[float, float, float, float | None]


@dataclass
class SensorState:
    """What the cleaner remembers about one sensor."""

    watermark: float = float("-inf")  # newest trusted event time (epoch seconds)
    history: list[tuple[float, float]] = field(default_factory=list)  # (time, value), valid
    last_value: float | None = None
    repeats: int = 0
    run_start: float | None = None  # event time of the first value of the current run
    run_before: float | None = None  # event time of the reading before it (another value)
    run_stuck: bool = False  # whether the current run was already judged stuck
    contradicting: list[tuple[float, float]] = field(default_factory=list)  # see SHIFT_CONFIRM
    # a sparse sensor's reading far from its reference, judged by the next one (see
    # settle_suspect): (event time, value, the reference median it was far from)
    suspect: tuple[float, float, float] | None = None
    pairs: int = 0  # consecutive valid pairs learned from (counted up to STEP_PAIRS)
    step: float = 0.0  # recent mean absolute change between consecutive valid values
    decimals: int = 0  # most decimals its values showed
    # The grids of GRIDS that every value it was learned from lies on (a bit each), and how
    # many values those were: a sensor whose values all lie on a coarser grid than their
    # decimals (whole degF stored in degC with one decimal) has that grid's step as resolution.
    grids: int = (1 << len(GRIDS)) - 1
    graded: int = 0
    longest: float = 0.0  # the longest plateau (seconds) it showed and left, not judged stuck
    # recent runs judged stuck, (first, last event time, value): a late reading joins them
    # (the event time of the reading after the run, None while unknown): a late reading with
    # the run's value within the run, or between it and the reading after it, joins it
    frozen: list[Frozen] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)  # event id digests, oldest first, unique
    touched: float = float("-inf")  # ingest time of its newest reading (epoch seconds)
    # The same ids as a set: membership in O(1); not part of the stored state.
    _seen_index: set[int] = field(init=False, repr=False, compare=False)
    # The history its sorted gaps were last computed from, and those gaps: every reading asks
    # for the median gap several times, and the history changes at most once in between.
    _gap_history: list[tuple[float, float]] = field(init=False, repr=False, compare=False)
    _gaps: list[float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._seen_index = set(self.seen)
        self._gap_history, self._gaps = [], []

    def _median_gap(self, at_least: int) -> float | None:
        """The median gap between the event times of its history, with enough gaps."""
        # a copy of the history it was computed from: comparing two lists of tuples runs in C,
        # and the history changes at most once between the several asks of one reading
        if self.history != self._gap_history:
            self._gap_history = list(self.history)
            times = [t for t, _ in self.history]
            self._gaps = sorted([b - a for a, b in itertools.pairwise(times) if b > a])
        gaps = self._gaps
        if len(gaps) < at_least or not gaps:
            return None
        middle = len(gaps) // 2  # the median as statistics.median takes it
        return gaps[middle] if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2

    def interval(self) -> float | None:
        """The sensor's sampling interval as its recent valid readings show it (the median
        gap of its history), once it has three; None before."""
        return self._median_gap(2)

    def resolution(self) -> float | None:
        """Its quantisation step, once learned: the coarsest grid of GRIDS all its values lie
        on when it is coarser than their decimals (after GRID_VALUES values), else what the
        decimals allow."""
        if not self.pairs:
            return None
        finest = 10.0**-self.decimals
        if self.grids and self.graded >= GRID_VALUES:
            for bit, (step, _) in enumerate(GRIDS):
                if self.grids >> bit & 1 and step > finest:
                    return step
        return finest

    def sparse(self) -> bool:
        """Whether the sensor samples so sparsely that REFERENCE_INTERVALS of its sampling
        interval (the median gap of its history) are longer than HISTORY_MAX_AGE."""
        return self.reference_span() > HISTORY_MAX_AGE

    def reference_span(self) -> float:
        gap = self._median_gap(1)
        return 0.0 if gap is None else REFERENCE_INTERVALS * gap

    def reference(self, event_time: float) -> list[float]:
        """The recent valid values that a reading at `event_time` is judged by: those within
        HISTORY_MAX_AGE of it or, for a sparse sensor, the newest REFERENCE_SPARSE within
        its reference span. A late reading (before the sensor's newest) is judged only by
        those close to it, within RATE_WINDOW or its reference span: the history holds the
        sensor's newest readings, and hours after a reading say little about it (judged
        against them, a shower's minutes that arrived late were spikes)."""
        span = self.reference_span()
        if span <= HISTORY_MAX_AGE:
            reach = HISTORY_MAX_AGE if event_time >= self.watermark else max(RATE_WINDOW, span)
            return [v for t, v in self.history if abs(event_time - t) <= reach]
        return [v for t, v in self.history if abs(event_time - t) <= span][-REFERENCE_SPARSE:]

    def has_reference(self, event_time: float) -> bool:
        """Whether a recent valid reading exists for the level-2 checks to judge one at
        `event_time` by (as the spike rule looks): `reference` is not empty, asked without
        building it, newest first."""
        span = self.reference_span()
        if span <= HISTORY_MAX_AGE:
            reach = HISTORY_MAX_AGE if event_time >= self.watermark else max(RATE_WINDOW, span)
        else:
            reach = span
        return any(abs(event_time - t) <= reach for t, _ in reversed(self.history))

    def remember(self, event_id: str) -> bool:
        """Record an event id; False when it was already among the recent ones."""
        digest = id_digest(event_id)
        if digest in self._seen_index:
            return False
        self.seen.append(digest)
        self._seen_index.add(digest)
        while len(self.seen) > SEEN_IDS:
            self._seen_index.discard(self.seen.pop(0))
        return True

    def to_json(self, seen: bool = True) -> dict[str, Any]:
        """The state as JSON; without the duplicate memory when `seen` is False (the older
        checkpoints of a partition's ring, where it would be most of the bytes)."""
        data: dict[str, Any] = {
            "watermark": self.watermark if self.watermark != float("-inf") else None,
            "history": self.history,
            "last_value": self.last_value,
            "repeats": self.repeats,
            "run_start": self.run_start,
            "run_before": self.run_before,
            "run_stuck": self.run_stuck,
            "contradicting": self.contradicting,
            "suspect": self.suspect,
            "pairs": self.pairs,
            "step": self.step,
            "decimals": self.decimals,
            "grids": self.grids,
            "graded": self.graded,
            "longest": self.longest,
            "frozen": self.frozen,
            "touched": self.touched if self.touched != float("-inf") else None,
        }
        if seen:
            data["seen"] = _pack(self.seen)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SensorState:
        watermark = data.get("watermark")
        touched = data.get("touched", watermark)  # a state saved before `touched` existed
        return cls(
            watermark=float("-inf") if watermark is None else float(watermark),
            touched=float("-inf") if touched is None else float(touched),
            history=[(float(t), float(v)) for t, v in data.get("history", [])],
            last_value=data.get("last_value"),
            repeats=int(data.get("repeats", 0)),
            run_start=data.get("run_start"),
            run_before=data.get("run_before"),
            run_stuck=bool(data.get("run_stuck", False)),
            contradicting=[(float(t), float(v)) for t, v in data.get("contradicting", [])],
            suspect=_triple(data.get("suspect")),
            pairs=int(data.get("pairs", 0)),
            step=float(data.get("step", 0.0)),
            decimals=int(data.get("decimals", 0)),
            grids=int(data.get("grids", (1 << len(GRIDS)) - 1)),
            graded=int(data.get("graded", 0)),
            longest=float(data.get("longest", 0.0)),
            frozen=[_frozen(run) for run in data.get("frozen", [])],
            seen=_unpack(data.get("seen")),
        )


def id_digest(event_id: str) -> int:
    """An event id as the 64-bit number the duplicate memory keeps."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


def _pack(digests: list[int]) -> str:
    return base64.b64encode(b"".join(d.to_bytes(8, "big") for d in digests)).decode("ascii")


def _unpack(stored: Any) -> list[int]:
    """The duplicate memory as saved: packed digests, or (a state saved before digests)
    the ids themselves."""
    if isinstance(stored, str):
        raw = base64.b64decode(stored)
        return [int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw) - 7, 8)]
    if isinstance(stored, list):
        return list(dict.fromkeys(id_digest(str(e)) for e in stored))[-SEEN_IDS:]
    return []


def sequential_checks(
    state: SensorState,
    event_id: str,
    metric: str,
    event_time: float,
    value: float,
    allowed_lateness: float,
    trusted: bool,
    measured: float | None = None,
) -> tuple[tuple[str, ...], tuple[Hindsight, ...]]:
    """Flags from the sensor's past, flags this reading puts on earlier ones, and the state
    updated with this reading.

    `trusted` is False when an earlier rule already invalidated the reading: it is still
    checked for duplication but does not move the watermark or the history. `measured`: the
    value as measured, before a declared calibration offset (`value` by default); its
    decimals are what the sensor's resolution is learned from.
    """
    if not state.remember(event_id):
        return (DUPLICATE,), ()

    flags: list[str] = []
    if event_time < state.watermark - allowed_lateness:
        flags.append(TOO_LATE)
    if not trusted:
        # already invalid (impossible, from the future): says nothing about the signal
        return tuple(flags), ()

    hindsight: list[Hindsight] = []
    if state.suspect is not None and event_time > state.suspect[0]:
        hindsight += settle_suspect(state, state.suspect, metric, value)
    suspect = False
    recent = state.reference(event_time)
    if len(recent) >= 3 and abs(value - statistics.median(recent)) > SPIKE_THRESHOLD[metric]:
        if state.sparse():  # a spike comes back, weather does not: the next reading tells
            state.suspect, suspect = (event_time, value, statistics.median(recent)), True
        else:
            flags.append(SPIKE)
    earlier = [(t, v) for t, v in state.history if 0 < event_time - t <= RATE_WINDOW]
    if earlier:
        t_prev, v_prev = earlier[-1]
        allowed = SPIKE_THRESHOLD[metric] / 2 + MAX_RATE_PER_MINUTE[metric] * (
            (event_time - t_prev) / 60.0
        )
        if abs(value - v_prev) > allowed:
            flags.append(RATE_OF_CHANGE)
    if SPIKE in flags or RATE_OF_CHANGE in flags:
        shifted(state, metric, event_time, value)
    elif not flags:
        state.contradicting.clear()
    # A spike, a suspect or an out-of-order reading is no link in a run of identical values;
    # an out-of-order reading with the value of a run judged stuck around it is stuck too.
    if not flags and not suspect and event_time >= state.watermark:
        hindsight += _persistence(
            state, metric, event_time, value, flags, value if measured is None else measured
        )
    elif not flags and not suspect:
        hindsight += _late_link(state, metric, event_time, value, flags)

    if not flags:
        state.watermark = max(state.watermark, event_time)
        if not suspect:
            _remember_value(state, event_time, value)
    return tuple(flags), tuple(hindsight)


def _remember_value(state: SensorState, event_time: float, value: float) -> None:
    state.history.append((event_time, value))
    state.history.sort()
    del state.history[:-HISTORY]


def _persistence(
    state: SensorState,
    metric: str,
    event_time: float,
    value: float,
    flags: list[str],
    measured: float,
) -> list[Hindsight]:
    """The stuck rule (see STUCK_REPEATS) and the learning of the sensor's steps; a run judged
    stuck reaches back to its first value."""
    previous = state.last_value
    if previous is not None and value == previous:
        state.repeats += 1
    else:
        _run_ended(state, event_time)
        if state.run_stuck and state.frozen and state.frozen[-1][2] == previous:
            first, last, frozen, _ = state.frozen[-1]
            state.frozen[-1] = (first, last, frozen, event_time)
        state.repeats, state.run_start, state.run_stuck = 1, event_time, False
        state.run_before = state.watermark if state.watermark != float("-inf") else None
    state.last_value = value
    if persistent(state, metric, event_time, value):
        flags.append(STUCK)
        if state.run_stuck:
            if state.frozen and state.frozen[-1][2] == value:
                first, _, frozen, _ = state.frozen[-1]
                state.frozen[-1] = (first, event_time, frozen, None)
            return []
        # the run's first values were no signal either
        state.run_stuck = True
        start = event_time if state.run_start is None else state.run_start
        state.frozen = [*state.frozen, (start, event_time, value, None)][-FROZEN_RUNS:]
        state.history = [(t, v) for t, v in state.history if t < start or v != value]
        return [Hindsight(STUCK, start, event_time, value)]
    if previous is not None:  # learn how far this sensor's genuine values move
        state.pairs = min(state.pairs + 1, STEP_PAIRS)
        # the mean of the first pairs, then a moving average of the last STEP_PAIRS
        state.step += (abs(value - previous) - state.step) / state.pairs
        state.decimals = max(state.decimals, decimals(measured))
        if state.grids:  # a fine sensor is on none after a few values: nothing to check
            state.grids &= grids_of(measured, state.decimals)
        state.graded = min(state.graded + 1, GRID_VALUES)
    return []


def _run_ended(state: SensorState, event_time: float) -> None:
    """A run of identical values ended (the value changed at `event_time`): remember how long
    a plateau that was no fault lasted. It counts from its first value to the change."""
    if state.run_start is None or state.run_stuck or state.repeats < STUCK_REPEATS:
        return
    state.longest = max(state.longest, event_time - state.run_start)


def open_plateau(
    state: SensorState, metric: str, event_time: float, value: float
) -> tuple[float, float] | None:
    """The span (first and newest event time) of the run of identical values this reading
    belongs to, when that run is for the neighbours to judge (cleaning.plateau_rule): long
    enough and not stuck yet."""
    start = state.run_start
    if state.run_stuck or state.repeats < NEIGHBOUR_REPEATS or start is None:
        return None
    if state.last_value != value or not start <= event_time <= state.watermark:
        return None  # not a link of the current run
    if state.watermark - start < NEIGHBOUR_MIN_SPAN:
        return None
    spec = METRICS[metric]
    if value <= spec.minimum or value >= spec.maximum:
        return None
    return start, state.watermark


def _late_link(
    state: SensorState, metric: str, event_time: float, value: float, flags: list[str]
) -> list[Hindsight]:
    """A late reading (before the sensor's newest) that no rule flagged: inside a run judged
    stuck, with its value, it is stuck too; just before the current run (after the reading
    that preceded the run), with the run's value, it is the run's first value now, and the
    run is judged again with its new length."""
    if joins_frozen(state, event_time, value):
        flags.append(STUCK)
        return []
    start = state.run_start
    if start is None or value != state.last_value or event_time >= start:
        return []
    if state.run_before is not None and event_time <= state.run_before:
        return []
    state.run_start = event_time
    state.repeats += 1
    if state.run_stuck:
        if state.frozen and state.frozen[-1][2] == value:
            first, last, frozen, after = state.frozen[-1]
            state.frozen[-1] = (min(first, event_time), last, frozen, after)
        flags.append(STUCK)
        return []
    if not persistent(state, metric, state.watermark, value):
        return []
    flags.append(STUCK)
    state.run_stuck = True
    state.frozen = [*state.frozen, (event_time, state.watermark, value, None)][-FROZEN_RUNS:]
    state.history = [(t, v) for t, v in state.history if t < event_time or v != value]
    return [Hindsight(STUCK, event_time, state.watermark + SPAN_END, value)]


def frozen_by_neighbours(state: SensorState, start: float, end: float, value: float) -> None:
    """The neighbours judged the run [start, end] of `value` stuck (cleaning.plateau_rule):
    when it is the current run, its next readings are stuck at once; late readings join it."""
    after: float | None = None
    if state.run_start == start and state.last_value == value:
        end = max(end, state.watermark)  # the current run: it goes on
        if not state.run_stuck:
            state.run_stuck = True
            state.history = [(t, v) for t, v in state.history if t < start or v != value]
    else:  # a run that ended: the reading after it, if the history still holds it
        later = [t for t, v in state.history if t > end and v != value]
        if state.run_before == end:
            later.append(state.run_start if state.run_start is not None else end)
        after = min(later, default=None)
    known = [run for run in state.frozen if run[0] != start or run[2] != value]
    state.frozen = [*known, (start, end, value, after)][-FROZEN_RUNS:]


def joins_frozen(state: SensorState, event_time: float, value: float) -> bool:
    """Whether an out-of-order reading joins a run judged stuck: with the run's value, within
    the run, or after it but before the reading that ended it (its last value then)."""
    for n, (first, last, frozen, after) in enumerate(state.frozen):
        if value != frozen or event_time < first:
            continue
        if event_time <= last:
            return True
        if after is not None and event_time < after:
            state.frozen[n] = (first, event_time, frozen, after)
            return True
    return False


def _frozen(run: Any) -> Frozen:
    """A frozen run as saved (one saved before `after` existed has three fields)."""
    first, last, value, *rest = run
    after = rest[0] if rest else None
    return float(first), float(last), float(value), None if after is None else float(after)


def settle_suspect(
    state: SensorState, suspected: tuple[float, float, float], metric: str, value: float
) -> list[Hindsight]:
    """Judge a sparse sensor's suspect reading by the one after it: back near the reference
    and far from the suspect, the suspect was a spike; otherwise the signal really moved and
    the suspect joins the history."""
    at, suspect, reference = suspected
    state.suspect = None
    threshold = SPIKE_THRESHOLD[metric]
    if abs(value - reference) <= threshold < abs(value - suspect):
        return [Hindsight(SPIKE, at, at + SUSPECT_WIDTH, suspect)]
    _remember_value(state, at, suspect)
    return []


def _triple(data: Any) -> tuple[float, float, float] | None:
    if not data:
        return None
    at, value, reference = data
    return float(at), float(value), float(reference)


def shifted(state: SensorState, metric: str, event_time: float, value: float) -> bool:
    """Record a reading the reference contradicts; when SHIFT_CONFIRM in a row agree, they
    replace the reference (see SHIFT_CONFIRM). Returns whether they did."""
    state.contradicting.append((event_time, value))
    del state.contradicting[:-SHIFT_CONFIRM]
    values = [v for _, v in state.contradicting]
    if len(values) < SHIFT_CONFIRM or max(values) - min(values) > SPIKE_THRESHOLD[metric]:
        return False
    state.history = sorted(state.contradicting)
    state.contradicting = []
    return True


def decimals(value: float) -> int:
    """Decimals of a value as the sensor wrote it (the shortest repr of a parsed number)."""
    text = repr(value)
    if "e" in text or "n" in text:  # exponent, inf, nan: no resolution to learn
        return 0
    return len(text.partition(".")[2].rstrip("0"))


def grids_of(value: float, places: int) -> int:
    """The grids of GRIDS that `value`, rounded to `places` decimals, lies on (a bit each)."""
    tolerance = 0.5 * 10.0**-places + 1e-9
    found = 0
    for bit, (step, origin) in enumerate(GRIDS):
        offset = value - origin
        if abs(offset - round(offset / step) * step) <= tolerance:
            found |= 1 << bit
    return found


def moves_by_steps(state: SensorState) -> float:
    """The sensor's recent mean change in units of its quantisation step (0 before learned)."""
    resolution = state.resolution()
    if state.pairs < LEARN_PAIRS or resolution is None:
        return 0.0
    return state.step / resolution


def fast(state: SensorState) -> bool:
    """Whether the sensor samples at least every FAST_INTERVAL (once its interval is known)."""
    interval = state.interval()
    return interval is not None and interval <= FAST_INTERVAL


def plateau_span(state: SensorState) -> float:
    """How long the sensor may hold one value (off its bounds) before the value is stuck by
    time alone (see STUCK_REPEATS)."""
    if fast(state):
        span = FAST_SPAN
    elif moves_by_steps(state) >= FINE_STEPS:
        span = SLOW_FINE_SPAN
    else:
        span = SLOW_COARSE_SPAN
    return max(span, PLATEAU_MARGIN * state.longest)


def persistent(state: SensorState, metric: str, event_time: float, value: float) -> bool:
    """Whether the current run of identical values is a frozen sensor (see STUCK_REPEATS)."""
    if state.run_stuck:  # a run judged stuck stays stuck while it lasts
        return True
    if state.repeats < STUCK_REPEATS:
        return False
    spec = METRICS[metric]
    if value <= spec.minimum or value >= spec.maximum:
        return False
    if fast(state) and moves_by_steps(state) >= FINE_STEPS:
        return True
    start = event_time if state.run_start is None else state.run_start
    span = plateau_span(state)
    if weather_plateau(metric, value):
        span = max(span, SLOW_COARSE_SPAN)
    return event_time - start > span


def weather_plateau(metric: str, value: float) -> bool:
    """Whether real weather holds a sensor on this value for hours: relative humidity at or
    above HUMIDITY_CEILING (fog: a sensor reads its own ceiling, 90 to 100 %RH by sensor), a
    temperature at the melting point (melting snow and ice hold 0 degC). Judged by time only
    after SLOW_COARSE_SPAN, and not by the neighbours (cleaning.plateau_rule)."""
    if metric == "humidity":
        return value >= HUMIDITY_CEILING
    return metric == "temperature" and abs(value) <= MELTING_POINT_BAND


def evict_idle(states: MutableMapping[str, SensorState], now: float, idle: float) -> list[str]:
    """Forget the sensors without a reading for more than `idle` seconds of ingest time (their
    readings would be refused or judged afresh anyway); returns who was forgotten. Keeps the
    state of a network bounded by the sensors active within `idle`."""
    gone = [sensor for sensor, state in states.items() if state.touched < now - idle]
    for sensor in gone:
        del states[sensor]
    return gone
