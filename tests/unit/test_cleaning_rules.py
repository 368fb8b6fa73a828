"""Each cleaning rule on its own."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from iot_pipeline import vocabulary
from iot_pipeline.cleaning import (
    CleaningPolicy,
    CleanReading,
    RawRecord,
    SensorState,
    clean_batch,
    qc_verdict,
)
from iot_pipeline.cleaning.state import FAST_SPAN, STUCK_REPEATS, frozen_by_neighbours
from iot_pipeline.schema import format_event_time

from support.readings import sample_reading

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def reading(**change: object) -> dict[str, object]:
    return sample_reading(**change)


def clean(  # type: ignore[no-untyped-def]
    *docs: dict[str, object] | bytes,
    states: dict[str, SensorState] | None = None,
    policy: CleaningPolicy | None = None,
):
    records = [
        RawRecord(d if isinstance(d, bytes) else json.dumps(d).encode(), "t", 3, n)
        for n, d in enumerate(docs)
    ]
    return clean_batch(records, {} if states is None else states, NOW, policy or CleaningPolicy())


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe{}", b'{"a":1,}', b""])
def test_unparseable_bytes_are_dead_lettered_with_coordinates(raw: bytes) -> None:
    result = clean(raw)
    assert result.readings == []
    (dead,) = result.dead_letters
    assert (dead.reason, dead.stage) == (vocabulary.MALFORMED_JSON, "parse")
    assert (dead.record.value, dead.record.partition, dead.record.offset) == (raw, 3, 0)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({k: v for k, v in reading().items() if k != "event_id"}, "event_id"),
        (reading(value="21.5"), "value"),
        (reading(debug=1), "debug"),
        (reading(event_time=1_700_000_000), "event_time"),
        ([1, 2], "(root)"),
    ],
)
def test_schema_violations_name_the_field(doc: object, field: str) -> None:
    (dead,) = clean(json.dumps(doc).encode()).dead_letters
    assert (dead.reason, dead.stage) == (vocabulary.SCHEMA_INVALID, "schema")
    assert field in dead.detail or field == "(root)"


def test_fahrenheit_is_converted_and_flagged() -> None:
    (kept,) = clean(reading(value=70.7, unit="°F")).readings
    assert kept.reading.unit == "°C"
    assert kept.reading.value == pytest.approx(21.5)
    assert (kept.original_value, kept.original_unit) == (70.7, "°F")
    assert kept.flags == (vocabulary.UNIT_CONVERTED,)
    assert kept.valid


def test_event_times_with_an_offset_become_utc() -> None:
    (kept,) = clean(reading(event_time="2026-11-28T12:59:00.250+01:00")).readings
    assert kept.reading.event_time == datetime(2026, 11, 28, 11, 59, 0, 250_000, tzinfo=UTC)
    assert kept.reading.event_time.utcoffset() == timedelta(0)
    assert format_event_time(kept.reading.event_time) == "2026-11-28T11:59:00.250Z"
    assert format_event_time(datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC)) == (
        "2026-01-02T03:04:05.999Z"
    )


def test_unit_that_cannot_apply_is_dead_lettered() -> None:
    (dead,) = clean(reading(metric="pm25", unit="°C")).dead_letters
    assert (dead.reason, dead.stage) == (vocabulary.UNIT_MISMATCH, "normalise")


@pytest.mark.parametrize(
    ("metric", "unit", "value"),
    [("humidity", "%", 130.0), ("pm10", "µg/m³", -3.0), ("temperature", "°C", 75.0)],
)
def test_physically_impossible_values_are_kept_flagged_and_invalid(
    metric: str, unit: str, value: float
) -> None:
    (kept,) = clean(reading(metric=metric, unit=unit, value=value)).readings
    assert vocabulary.IMPOSSIBLE_VALUE in kept.flags
    assert not kept.valid


def test_future_timestamps_beyond_the_tolerated_skew() -> None:
    soon = (NOW + timedelta(minutes=2)).isoformat()
    later = (NOW + timedelta(hours=2)).isoformat()
    ok, skewed = clean(reading(event_time=soon), reading(event_id="e-2", event_time=later)).readings
    assert ok.valid
    assert vocabulary.FUTURE_TIMESTAMP in skewed.flags


def test_same_event_again_is_a_duplicate_even_in_a_later_batch() -> None:
    states: dict[str, SensorState] = {}
    clean(reading(), states=states)
    (again,) = clean(reading(), states=states).readings
    assert again.flags == (vocabulary.DUPLICATE,)


def test_too_late_is_measured_against_the_sensor_watermark_when_a_limit_is_set() -> None:
    states: dict[str, SensorState] = {}
    limited = CleaningPolicy(allowed_lateness=timedelta(hours=24))
    clean(reading(), states=states, policy=limited)
    old = (NOW - timedelta(hours=30)).isoformat()
    fine = (NOW - timedelta(hours=5)).isoformat()
    late, within = clean(
        reading(event_id="e-2", event_time=old),
        reading(event_id="e-3", event_time=fine),
        states=states,
        policy=limited,
    ).readings
    assert vocabulary.TOO_LATE in late.flags
    assert within.valid


def test_late_data_is_data_by_default() -> None:
    """A station uploading two days of buffered readings: valid, not too late."""
    states: dict[str, SensorState] = {}
    clean(reading(), states=states)
    buffered = [
        reading(event_id=f"b-{n}", event_time=(NOW - timedelta(hours=48, minutes=-n)).isoformat())
        for n in range(5)
    ]
    assert all(r.valid and not r.flags for r in clean(*buffered, states=states).readings)


def test_readings_before_the_kept_days_are_dead_letters() -> None:
    policy = CleaningPolicy(retention_days=3)  # today and the two days before
    kept_day = NOW.replace(hour=0, minute=0, second=0) - timedelta(days=2)
    result = clean(
        reading(event_id="kept", event_time=kept_day.isoformat()),
        reading(event_id="gone", event_time=(kept_day - timedelta(seconds=1)).isoformat()),
        policy=policy,
    )
    assert [r.reading.event_id for r in result.readings] == ["kept"]
    (letter,) = result.dead_letters
    assert letter.reason == vocabulary.BEYOND_RETENTION
    assert "oldest day still kept" in letter.detail


def _series(
    values: list[float], every: timedelta = timedelta(minutes=1)
) -> list[dict[str, object]]:
    return [
        reading(
            event_id=f"e-{n}",
            value=v,
            event_time=(NOW - every * (len(values) - n)).isoformat(),
        )
        for n, v in enumerate(values)
    ]


def test_spike_against_the_recent_median_and_not_remembered() -> None:
    result = clean(*_series([21.0, 21.2, 20.9, 21.1, 35.0, 21.3]))
    flags = [r.flags for r in result.readings]
    assert vocabulary.SPIKE in flags[4]  # (a jump that fast also breaks the rate-of-change rule)
    assert all(f == () for i, f in enumerate(flags) if i != 4)


def _noisy(count: int) -> list[float]:
    """A fine sensor: 0.01 degC resolution, moving about 0.3 degC from sample to sample."""
    rng = random.Random(7)
    return [round(21.0 + rng.uniform(-0.5, 0.5), 2) for _ in range(count)]


def _stuck(values: list[float], **change: object) -> list[int]:
    docs = [{**d, **change} for d in _series(values)]
    return [i for i, r in enumerate(clean(*docs).readings) if vocabulary.STUCK in r.flags]


def test_a_fine_sensor_is_stuck_from_the_third_identical_value() -> None:
    learned = _noisy(12)
    values = learned + [21.37] * (STUCK_REPEATS + 2) + [21.9]
    first = len(learned) + STUCK_REPEATS - 1
    assert _stuck(values) == list(range(first, first + 3))


def _reached(readings: list[CleanReading]) -> dict[str, list[int]]:
    """Which readings the flags found in hindsight reach (as processing.hindsight does)."""
    out: dict[str, list[int]] = {}
    for later in (h for r in readings for h in r.hindsight):
        for i, r in enumerate(readings):
            epoch = r.reading.event_time.timestamp()
            if later.start <= epoch < later.end and r.reading.value == later.value:
                out.setdefault(later.flag, []).append(i)
    return out


def test_a_run_judged_stuck_reaches_back_to_its_first_value_once() -> None:
    learned = _noisy(12)
    result = clean(*_series(learned + [21.37] * (STUCK_REPEATS + 2) + [21.9]))
    judged = [r for r in result.readings if r.hindsight]
    assert len(judged) == 1  # the first reading judged stuck, not every later one
    assert _reached(result.readings) == {
        vocabulary.STUCK: list(range(len(learned), len(learned) + STUCK_REPEATS - 1))
    }


def test_a_coarse_sensors_long_run_is_stuck_from_its_start_in_hindsight() -> None:
    ramp = [round(15.0 + 0.1 * (i % 3), 1) for i in range(30)]
    span = int(FAST_SPAN // 60)
    result = clean(*_series(ramp + [14.8] * (span + 3)))
    assert _reached(result.readings)[vocabulary.STUCK] == list(range(30, 30 + span + 1))


HOUR = timedelta(hours=1)


def test_a_sparse_sensors_spike_is_found_when_the_next_reading_comes_back() -> None:
    values = [12.0, 13.1, 14.0, 15.2, 29.0, 16.1, 16.8]
    result = clean(*_series(values, every=HOUR))
    assert all(r.valid for r in result.readings)  # nothing is judged at once...
    assert _reached(result.readings) == {vocabulary.SPIKE: [4]}  # ...but in hindsight
    assert result.readings[5].hindsight[0].flag == vocabulary.SPIKE


def test_a_sparse_sensors_steep_weather_is_no_spike() -> None:
    # Alamosa on a winter morning: 5.7 degC in an hour, and it keeps rising; rain in Payerne
    alamosa = [-23.1, -22.8, -22.2, -20.3, -14.6, -10.7, -7.9, -6.0]
    payerne = [52.9, 52.7, 52.3, 68.0, 78.3, 95.0, 96.1, 95.4]
    humidity = {"sensor_id": "casa-anfa-01-humidity", "metric": "humidity", "unit": "%"}
    for values, change in ((alamosa, {}), (payerne, humidity)):
        docs = [{**d, **change} for d in _series(values, every=HOUR)]
        result = clean(*docs)
        assert all(r.valid for r in result.readings)
        assert _reached(result.readings) == {}


def test_a_stale_reference_gives_way_to_readings_that_agree() -> None:
    # a frozen sensor's value, then the signal again: flagged until three agree, not for hours
    values = [21.0, 21.2, 20.9, 21.1, *[29.0 + 0.1 * i for i in range(8)]]
    flags = [r.flags for r in clean(*_series(values)).readings]
    assert [bool(f) for f in flags[4:]] == [True, True, True, False, False, False, False, False]


def test_a_late_reading_inside_a_stuck_run_is_stuck_like_its_neighbours() -> None:
    learned = _noisy(12)
    docs = _series(learned + [21.37] * 8 + [21.9, 22.1])
    late = docs.pop(len(learned) + 4)  # the fifth frozen value arrives after the run ended
    states: dict[str, SensorState] = {}
    clean(*docs, states=states)
    assert vocabulary.STUCK in clean(late, states=states).readings[0].flags
    other = {**late, "event_id": "late-but-other", "value": 21.5}
    assert vocabulary.STUCK not in clean(other, states=states).readings[0].flags


def test_a_batch_judges_its_readings_in_event_time_order() -> None:
    learned = _noisy(12)
    docs = _series(learned + [21.37] * 5 + [21.9])
    shuffled = docs[:]
    random.Random(3).shuffle(shuffled)
    in_order = {r.reading.event_id: r.flags for r in clean(*docs).readings}
    assert {r.reading.event_id: r.flags for r in clean(*shuffled).readings} == in_order
    assert sum(vocabulary.STUCK in f for f in in_order.values()) == 3


def test_a_run_the_neighbours_judged_stuck_stays_stuck_and_late_readings_join_it() -> None:
    states: dict[str, SensorState] = {}
    learned = [12.0, 13.1, 14.0, 15.2, 16.1, 16.8]
    docs = _series([*learned, *[17.0] * 6, 19.5], every=HOUR)
    clean(*docs[:10], states=states)  # the run's first four values
    state = states["casa-anfa-01-temperature"]
    start = docs[6]["event_time"]
    first = datetime.fromisoformat(str(start)).timestamp()
    frozen_by_neighbours(state, first, state.watermark, 17.0)
    # the run's next value is stuck when it is cleaned; the one after the run is not
    later = clean(docs[11], docs[12], states=states).readings
    assert [vocabulary.STUCK in r.flags for r in later] == [True, False]
    # a value of the run that arrives after the run ended joins it; another value does not
    late = clean(docs[10], {**docs[10], "event_id": "other", "value": 17.4}, states=states)
    assert [vocabulary.STUCK in r.flags for r in late.readings] == [True, False]


def test_a_late_reading_just_before_a_run_is_its_first_value() -> None:
    states: dict[str, SensorState] = {}
    learned = _noisy(12)
    docs = _series([*learned, *[21.37] * 3])
    early = docs.pop(len(learned))  # the run's first value arrives after the rest of it
    result = clean(*docs, states=states)
    assert not any(vocabulary.STUCK in r.flags for r in result.readings)  # two repeats only
    (joined,) = clean(early, states=states).readings
    assert vocabulary.STUCK in joined.flags  # now the fine sensor's third identical value
    run = len(learned)
    assert _reached([*result.readings, joined]) == {vocabulary.STUCK: [run, run + 1, run + 2]}


def test_a_whole_fahrenheit_sensor_written_in_celsius_has_the_fahrenheit_step() -> None:
    fahrenheit = [50, 51, 53, 52, 54, 55, 57, 56, 58, 60, 59, 61, 62, 64, 63, 65]
    values = [round((f - 32) / 1.8, 1) for f in fahrenheit]
    states: dict[str, SensorState] = {}
    clean(*_series(values), states=states)
    assert states["casa-anfa-01-temperature"].resolution() == pytest.approx(5 / 9)
    fine = [21.0 + 0.1 * (i % 7) for i in range(16)]
    states = {}
    clean(*_series([round(v, 1) for v in fine]), states=states)
    assert states["casa-anfa-01-temperature"].resolution() == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("values", "step"),
    [
        (
            [
                round(k - 273.15, 2)
                for k in (280, 281, 283, 282, 284, 285, 287, 286, 288, 290, 289, 291, 292, 294)
            ],
            1.0,
        ),  # whole kelvin written in degC
        ([round((f / 2 - 32) / 1.8, 2) for f in range(100, 116)], 5 / 18),  # half degF
        ([round(21.0 + 0.37 * (i % 9) - 0.11 * (i % 4), 2) for i in range(16)], 0.01),
    ],
)
def test_a_sensors_resolution_is_the_grid_its_values_lie_on(
    values: list[float], step: float
) -> None:
    states: dict[str, SensorState] = {}
    clean(*_series(values), states=states)
    assert states["casa-anfa-01-temperature"].resolution() == pytest.approx(step)


def test_an_hourly_coarse_sensor_holds_a_value_for_a_day_and_a_half() -> None:
    # Sand Point, whole degC: a day of one value is weather; two days without a change is not
    ramp = [8.0, 9.0, 10.0, 9.0, 8.0, 9.0, 10.0, 11.0, 10.0, 9.0]
    for hours, stuck in ((37, False), (52, True)):
        result = clean(*_series([*ramp, *[7.0] * hours, 8.0], every=HOUR))
        assert any(vocabulary.STUCK in r.flags for r in result.readings) is stuck


def test_fog_and_melting_snow_hold_a_sensor_for_hours() -> None:
    # a 1-minute whole-percent humidity sensor at 97 %RH in fog, 9 hours
    humidity = {"sensor_id": "casa-anfa-01-humidity", "metric": "humidity", "unit": "%"}
    rising = [88.0, 90.0, 91.0, 93.0, 94.0, 96.0, 95.0, 96.0, 97.0, 96.0]
    assert _stuck([*rising, *[97.0] * (9 * 60)], **humidity) == []
    # a 0.1 degC sensor in melting snow, 6 hours at 0.0
    falling = [1.2, 1.0, 0.9, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.1]
    assert _stuck([*falling, *[0.0] * (6 * 60)]) == []
    # the same hours at another value are stuck (fast sensors: after 3 hours)
    assert _stuck([*falling, *[0.5] * (6 * 60)]) != []


def test_a_sensor_not_yet_learned_is_judged_by_time_only() -> None:
    assert _stuck([21.0, 21.4] + [21.7] * 10) == []


def test_a_coarse_sensor_on_a_calm_night_is_stuck_only_past_the_persistence_span() -> None:
    # 0.1 degC, one reading a minute, moving one step at a time: hours of one value are weather
    ramp = [round(15.0 + 0.1 * (i % 3), 1) for i in range(30)]
    span = int(FAST_SPAN // 60)
    values = ramp + [14.8] * (span + 3) + [14.9]
    start = len(ramp)
    assert _stuck(values) == [start + span + 1, start + span + 2]


def test_a_value_at_a_physical_bound_is_never_stuck() -> None:
    saturated = [100.5] * int(2 * FAST_SPAN // 60)
    humidity = {"sensor_id": "casa-anfa-01-humidity", "metric": "humidity", "unit": "%"}
    assert _stuck([93.2, 97.6, 99.1, *saturated], **humidity) == []
    assert _stuck([3.0, 1.0, *[0.0] * 400], sensor_id="x-pm25", metric="pm25", unit="µg/m³") == []


@pytest.mark.parametrize(("value", "valid"), [(100.5, True), (105.0, True), (105.1, False)])
def test_humidity_above_100_within_the_instruments_accuracy_is_a_measurement(
    value: float, valid: bool
) -> None:
    (kept,) = clean(
        reading(sensor_id="casa-anfa-01-humidity", metric="humidity", unit="%", value=value)
    ).readings
    assert kept.valid is valid
    assert (vocabulary.IMPOSSIBLE_VALUE in kept.flags) is not valid


def test_state_survives_a_json_round_trip() -> None:
    states: dict[str, SensorState] = {}
    clean(*_series([21.0, 21.2, 20.9]), states=states)
    state = states["casa-anfa-01-temperature"]
    assert SensorState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert SensorState.from_json(SensorState().to_json()) == SensorState()


def test_rate_of_change_against_the_previous_valid_reading() -> None:
    # too few readings for a median: the jump is caught by the rate rule alone
    result = clean(*_series([21.0, 30.0]))
    assert result.readings[1].flags == (vocabulary.RATE_OF_CHANGE,)
    slow = clean(*_series([21.0, 21.9, 22.8, 23.7]))
    assert all(r.valid for r in slow.readings)


def test_each_reading_gets_one_qc_verdict() -> None:
    values = [21.0, 21.2, 20.9, 21.1, 35.0, 21.3]
    docs = [*_series(values), reading(event_id="hot", value=300.0)]
    verdicts = [r.qc for r in clean(*docs).readings]
    # the first has nothing to be judged by in time; the spike is questioned; 300 degC rejected
    assert verdicts == ["C", "S", "S", "S", "Q", "S", "X"]
    assert qc_verdict(["unit_converted"], screened=True) == "S"
    assert qc_verdict(["cross_metric", "impossible_value"], screened=True) == "X"
    assert qc_verdict(["stuck"], screened=False) == "Q"
