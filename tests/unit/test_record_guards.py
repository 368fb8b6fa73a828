"""Per-record guards: whatever one record holds, it becomes a reading or a dead letter with a
reason, and the records around it are untouched."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from iot_pipeline import vocabulary
from iot_pipeline.cleaning import RawRecord, clean_batch
from iot_pipeline.cleaning.batch import CleaningPolicy
from iot_pipeline.contracts import readings as documents
from iot_pipeline.contracts.readings import reading_actions, reading_id
from iot_pipeline.processing.dead_letters import FRAMING_BYTES, dead_letter_headers, fit_value

from support.readings import sample_reading

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SENSOR = "casa-anfa-01-temperature"


def doc(**change: object) -> dict[str, object]:
    return sample_reading(**change)


def record(
    value: dict[str, object] | bytes,
    offset: int = 0,
    key: bytes | None = SENSOR.encode(),
    timestamp: float | None = None,
) -> RawRecord:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return RawRecord(raw, "t", 2, offset, key, timestamp)


def between_valid(hostile: RawRecord) -> tuple[list[str], list[tuple[str, str]]]:
    """Clean a valid reading, the hostile record, a valid reading: (kept ids, dead letters)."""
    result = clean_batch(
        [record(doc(event_id="before"), 0), hostile, record(doc(event_id="after"), 2)], {}, NOW
    )
    kept = [r.reading.event_id for r in result.readings]
    return kept, [(d.reason, d.stage) for d in result.dead_letters]


HOSTILE = {
    "nested 1000 deep": b"[" * 1000 + b"]" * 1000,
    "nested object 100000 deep": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "integer of 5000 digits": json.dumps(doc()).replace("21.5", "9" * 5000).encode(),
    "NaN": json.dumps(doc()).replace("21.5", "NaN").encode(),
    "lone surrogate": b'{"event_id": "\\ud800"}',
    "1 MB of garbage": random.Random(1).randbytes(1 << 20),
    "null": b"null",
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bytes_are_dead_lettered_between_valid_readings(name: str) -> None:
    kept, dead = between_valid(record(HOSTILE[name], 1))
    assert kept == ["before", "after"]
    assert len(dead) == 1
    assert dead[0][0] in {vocabulary.MALFORMED_JSON, vocabulary.SCHEMA_INVALID}, dead


@pytest.mark.parametrize(
    "moment",
    [
        "9999-12-31T23:00:00-02:00",  # overflows once shifted to UTC
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59.999Z",
        "1999-12-31T23:59:59Z",
        "2026-11-30T12:00:01Z",  # more than a day ahead of its Kafka time
    ],
)
def test_event_times_outside_the_plausible_span_are_dead_letters(moment: str) -> None:
    kept, dead = between_valid(record(doc(event_id="x", event_time=moment), 1))
    assert kept == ["before", "after"]
    assert dead == [(vocabulary.TIME_OUT_OF_RANGE, "time")]


def test_the_plausible_span_is_configurable() -> None:
    policy = CleaningPolicy(
        earliest=datetime(1990, 1, 1, tzinfo=UTC), max_ahead=timedelta(hours=72)
    )
    old = record(doc(event_time="1995-06-01T00:00:00Z"))
    ahead = record(doc(event_id="e-2", event_time="2026-11-30T12:00:01Z"), 1)
    result = clean_batch([old, ahead], {}, NOW, policy)
    assert len(result.readings) == 2
    assert result.readings[1].flags == (vocabulary.FUTURE_TIMESTAMP,)  # kept, flagged, invalid


def test_a_few_minutes_ahead_is_kept_and_flagged() -> None:
    (kept,) = clean_batch([record(doc(event_time="2026-11-28T12:10:00Z"))], {}, NOW).readings
    assert vocabulary.FUTURE_TIMESTAMP in kept.flags


def test_the_clock_is_the_records_kafka_time_so_a_replay_judges_alike() -> None:
    produced = (NOW - timedelta(hours=1)).timestamp()
    ahead = doc(event_time="2026-11-28T11:10:00Z")  # 10 min after it reached Kafka
    first = clean_batch([record(ahead, timestamp=produced)], {}, NOW).readings[0]
    replayed = clean_batch(
        [record(ahead, timestamp=produced)], {}, NOW + timedelta(days=3)
    ).readings[0]
    assert first.flags == replayed.flags == (vocabulary.FUTURE_TIMESTAMP,)
    # a producer's clock ahead of ours is not trusted: the batch's clock bounds it
    hostile = record(doc(event_time="2026-11-28T18:00:00Z"), timestamp=NOW.timestamp() + 86400)
    assert clean_batch([hostile], {}, NOW).readings[0].flags == (vocabulary.FUTURE_TIMESTAMP,)


@pytest.mark.parametrize("seq", [2**63, 2**64, -1])
def test_seq_beyond_int64_is_a_schema_violation(seq: int) -> None:
    kept, dead = between_valid(record(doc(event_id="x", seq=seq), 1))
    assert kept == ["before", "after"]
    assert dead == [(vocabulary.SCHEMA_INVALID, "schema")]


def test_the_largest_int64_seq_is_stored() -> None:
    (kept,) = clean_batch([record(doc(seq=2**63 - 1))], {}, NOW).readings
    built = reading_actions("p", [kept], "b", NOW)
    assert built.failed == []
    assert len(built.actions) == 1


def test_a_key_naming_another_sensor_is_dead_lettered_and_no_key_is_accepted() -> None:
    kept, dead = between_valid(record(doc(event_id="x"), 1, key=b"casa-maarif-02-no2"))
    assert kept == ["before", "after"]
    assert dead == [(vocabulary.KEY_MISMATCH, "key")]
    kept, dead = between_valid(record(doc(event_id="x"), 1, key=None))
    assert kept == ["before", "x", "after"]
    assert dead == []


def test_a_step_that_raises_makes_an_unprocessable_letter_naming_step_and_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from iot_pipeline.cleaning import batch

    real = batch.sequential_checks  # type: ignore[attr-defined]  # imported there, not exported

    def explode(state, event_id, *args, **kwargs):  # type: ignore[no-untyped-def]
        if event_id == "x":
            raise ZeroDivisionError("boom")
        return real(state, event_id, *args, **kwargs)

    monkeypatch.setattr(batch, "sequential_checks", explode)
    result = clean_batch(
        [record(doc(event_id="before"), 0), record(doc(event_id="x"), 1), record(doc(), 2)],
        {},
        NOW,
    )
    assert [r.reading.event_id for r in result.readings] == ["before", "e-1"]
    (dead,) = result.dead_letters
    assert (dead.reason, dead.stage, dead.error_type) == (
        vocabulary.UNPROCESSABLE,
        "state",
        "ZeroDivisionError",
    )
    assert dead.detail == "ZeroDivisionError: boom"
    headers = dict(dead_letter_headers(dead, "b1", NOW))
    assert headers["dlq.exception"] == b"ZeroDivisionError"
    assert headers["dlq.reason"] == b"unprocessable"


def test_a_document_that_cannot_be_built_is_returned_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readings = clean_batch(
        [record(doc(event_id=f"e{n}", seq=n), n) for n in range(3)], {}, NOW
    ).readings
    real = documents.reading_document

    def broken(clean, *args):  # type: ignore[no-untyped-def]
        if clean.reading.event_id == "e1":
            raise TypeError("Integer exceeds 64-bit range")
        return real(clean, *args)

    monkeypatch.setattr(documents, "reading_document", broken)
    built = reading_actions("p", readings, "b", NOW)
    assert [a.document["event_id"] for a in built.actions] == ["e0", "e2"]
    assert [(c.reading.event_id, type(e).__name__) for c, e in built.failed] == [
        ("e1", "TypeError")
    ]
    assert all(a.encoded for a in built.actions)  # serialised once, here


def test_document_ids_are_per_sensor_and_unambiguous() -> None:
    assert reading_id("s-1", "e") == "s-1:e"
    assert reading_id("a:b", "c") != reading_id("a", "b:c")
    assert reading_id("a%3Ab", "c") != reading_id("a:b", "c")
    same_event = [
        record(doc(event_id="shared"), 0),
        record(doc(event_id="shared", sensor_id="other"), 1, key=b"other"),
    ]
    readings = clean_batch(same_event, {}, NOW).readings
    assert len({a.id for a in reading_actions("p", readings, "b", NOW).actions}) == 2


def test_dead_letter_values_fit_the_topic_or_are_truncated_with_their_size() -> None:
    limit = 1_048_588
    small = b"x" * 1000
    assert fit_value(small, limit) == (small, None)
    compressible = b'{"a": "' + b"a" * 3_000_000 + b'"}'
    assert fit_value(compressible, limit) == (compressible, None)  # gzip makes it fit
    noise = random.Random(2).randbytes(2_000_000)
    cut, original = fit_value(noise, limit)
    assert original == 2_000_000
    assert len(cut) == limit - FRAMING_BYTES
    assert noise.startswith(cut)


def test_random_bytes_never_raise_and_never_become_readings() -> None:
    rng = random.Random(7)
    noise = [record(rng.randbytes(rng.randint(0, 300)), n) for n in range(3000)]
    result = clean_batch(noise, {}, NOW)
    assert result.readings == []
    assert len(result.dead_letters) == 3000
    assert {d.reason for d in result.dead_letters} <= {
        vocabulary.MALFORMED_JSON,
        vocabulary.SCHEMA_INVALID,
    }
