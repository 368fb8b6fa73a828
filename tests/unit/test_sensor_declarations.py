"""What an operator declares of a sensor, at cleaning time: the calibration offset, the
active period (`inactive`, a level-1 rejection) and the declared interval, which wins over
the learned one; and the request body's bounds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from iot_pipeline import vocabulary
from iot_pipeline.api.models.sensors import SensorMetadataRequest
from iot_pipeline.cleaning import CleaningPolicy, CleanReading, RawRecord, SensorState, clean_batch
from iot_pipeline.cleaning.metadata import Declaration, activity_flags, calibrated
from iot_pipeline.contracts.metadata import declaration_of, metadata_document
from iot_pipeline.contracts.readings import reading_document
from iot_pipeline.schema import format_event_time

from support.readings import sample_reading

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SENSOR = "casa-anfa-01-temperature"
START = NOW - timedelta(hours=2)


def _at(minutes: float) -> str:
    return format_event_time(START + timedelta(minutes=minutes))


def _clean(
    docs: list[dict[str, object]],
    declared: Declaration | None,
    states: dict[str, SensorState] | None = None,
) -> list[CleanReading]:
    records = [RawRecord(json.dumps(d).encode(), "t", 0, n) for n, d in enumerate(docs)]
    declarations = {} if declared is None else {declared.sensor_id: declared}
    result = clean_batch(
        records, {} if states is None else states, NOW, CleaningPolicy(), declarations
    )
    assert result.dead_letters == []
    return result.readings


def _series(values: list[float], every: float = 1.0, **change: Any) -> list[dict[str, object]]:
    return [
        sample_reading(event_id=f"e-{n}", seq=n, value=v, event_time=_at(n * every), **change)
        for n, v in enumerate(values)
    ]


def test_the_offset_is_added_after_unit_conversion_and_the_original_kept() -> None:
    declared = Declaration(SENSOR, "temperature", calibration_offset=-0.4)
    celsius, fahrenheit = _clean(
        [
            sample_reading(event_id="c", value=21.5, event_time=_at(0)),
            sample_reading(event_id="f", value=70.7, unit="°F", event_time=_at(1)),
        ],
        declared,
    )
    assert (celsius.reading.value, celsius.original_value, celsius.original_unit) == (
        21.1,
        21.5,
        "°C",
    )
    assert celsius.calibration_offset == -0.4
    # 70.7 °F is 21.5 °C, then calibrated
    assert (fahrenheit.reading.value, fahrenheit.original_value) == (21.1, 70.7)
    assert fahrenheit.flags == (vocabulary.UNIT_CONVERTED,)
    document = reading_document(celsius, "b", "2026-11-28T12:00:00.000Z")
    assert (document["value"], document["original_value"]) == (21.1, 21.5)
    assert document["calibration_offset"] == -0.4


def test_no_declaration_no_offset_and_no_field() -> None:
    (plain,) = _clean([sample_reading(value=21.5)], None)
    assert (plain.reading.value, plain.calibration_offset) == (21.5, None)
    assert "calibration_offset" not in reading_document(plain, "b", "x")
    # an offset declared for another metric is not this reading's
    humid = Declaration(SENSOR, "humidity", calibration_offset=3.0)
    (other,) = _clean([sample_reading(value=21.5)], humid)
    assert (other.reading.value, other.calibration_offset) == (21.5, None)


def test_the_calibrated_value_is_what_the_rules_judge() -> None:
    # 58 °C is possible; 58 + 5 is not
    declared = Declaration(SENSOR, "temperature", calibration_offset=5.0)
    (hot,) = _clean([sample_reading(value=58.0)], declared)
    assert hot.reading.value == 63.0
    assert vocabulary.IMPOSSIBLE_VALUE in hot.flags


def test_calibration_keeps_the_sensors_resolution() -> None:
    assert calibrated(20.1, 0.5) == 20.6  # not 20.6000000000000014
    assert calibrated(20.1, 0.25) == 20.35
    assert calibrated(1e-7, 1e-7) == 0.0  # at most six decimals
    # the resolution is learned from the measured values (0.1), not from the offset's 0.01
    states: dict[str, SensorState] = {}
    declared = Declaration(SENSOR, "temperature", calibration_offset=0.25)
    readings = _clean(_series([20.0 + 0.1 * (n % 3) for n in range(8)]), declared, states)
    assert readings[-1].reading.value == 20.35
    assert readings[-1].resolution == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("minute", "inactive"),
    [(-1, True), (0, False), (30, False), (59.9, False), (60, True), (90, True)],
)
def test_outside_the_active_period_a_reading_is_rejected_and_kept(
    minute: float, inactive: bool
) -> None:
    declared = Declaration(
        SENSOR,
        active_from=START.timestamp(),
        active_to=(START + timedelta(hours=1)).timestamp(),
    )
    (kept,) = _clean([sample_reading(event_time=_at(minute))], declared)
    if inactive:
        assert kept.flags == (vocabulary.INACTIVE,)
        assert (kept.qc, kept.valid) == (vocabulary.QC_REJECTED, False)
    else:
        assert kept.flags == ()
        assert kept.valid


def test_inactive_is_a_level_1_invalidating_flag() -> None:
    assert vocabulary.INACTIVE in vocabulary.LEVEL_1
    assert vocabulary.INACTIVE in vocabulary.INVALIDATING
    open_ended = Declaration(SENSOR, active_from=100.0)
    assert activity_flags(open_ended, 99.9) == (vocabulary.INACTIVE,)
    assert activity_flags(open_ended, 1e12) == ()
    assert activity_flags(Declaration(SENSOR, active_to=100.0), 100.0) == (vocabulary.INACTIVE,)
    assert activity_flags(None, 0.0) == ()


def test_an_inactive_reading_teaches_the_cleaner_nothing() -> None:
    declared = Declaration(SENSOR, active_from=(START + timedelta(minutes=10)).timestamp())
    states: dict[str, SensorState] = {}
    _clean(_series([20.0, 20.1, 20.2]), declared, states)
    assert states[SENSOR].history == []


def test_a_declared_interval_wins_from_the_first_reading() -> None:
    declared = Declaration(SENSOR, interval_s=3600.0)
    readings = _clean(_series([20.0 + 0.1 * n for n in range(5)]), declared)
    assert [r.counted_interval for r in readings] == [3600.0] * 5
    # the learned interval stays what the readings show (for the registry)
    assert readings[0].interval is None
    assert readings[-1].interval == 60.0
    document = reading_document(readings[0], "b", "x")
    assert document["interval_s"] == 3600.0
    # without a declaration: learned, once known
    learned = _clean(_series([20.0 + 0.1 * n for n in range(5)]), None)
    assert [r.counted_interval for r in learned] == [None, None, 60.0, 60.0, 60.0]


def test_a_stored_declaration_round_trips() -> None:
    doc = metadata_document(
        SENSOR,
        NOW,
        metric="temperature",
        interval_s=600.0,
        calibration_offset=0.3,
        active_from=START,
        note="n",
    )
    assert doc["active_to"] is None
    assert declaration_of(doc) == Declaration(
        SENSOR, "temperature", 600.0, 0.3, START.timestamp(), None
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "at least one"),
        ({"note": "only a note"}, "at least one"),
        ({"interval_s": 0}, "greater than 0"),
        ({"interval_s": 86401}, "less than or equal to 86400"),
        ({"calibration_offset": 1.0}, "needs its metric"),
        ({"metric": "temperature", "calibration_offset": 150.5}, "at most 150"),
        ({"metric": "pm25", "calibration_offset": -1000.5}, "at most 1000"),
        ({"metric": "rain", "interval_s": 60}, "metric"),
        ({"active_from": "2026-01-02T00:00:00Z", "active_to": "2026-01-01T00:00:00"}, "after"),
        ({"interval_s": 60, "note": "x" * 501}, "500"),
        ({"interval_s": 60, "colour": "red"}, "Extra inputs"),
    ],
)
def test_bad_declarations_are_refused(body: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        SensorMetadataRequest.model_validate(body)


def test_declared_times_without_an_offset_are_utc() -> None:
    body = SensorMetadataRequest.model_validate(
        {"metric": "temperature", "calibration_offset": -150, "active_from": "2026-01-01T00:00"}
    )
    assert body.active_from == datetime(2026, 1, 1, tzinfo=UTC)
