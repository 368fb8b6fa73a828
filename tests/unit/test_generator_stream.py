"""The message stream: schema-valid clean readings, reproducible, faults labelled at rate."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest
from pydantic import ValidationError

from iot_pipeline.generator.faults import FAULT_KINDS, READING_FAULTS, FaultLabel, FaultRates
from iot_pipeline.generator.network import build_network
from iot_pipeline.generator.stream import ReadingStream
from iot_pipeline.schema import METRICS, SensorReading

START = datetime(2026, 11, 2, tzinfo=UTC).timestamp()
STRUCTURAL = {"malformed_json", "missing_field", "extra_field", "wrong_type"}


def _run(
    rates: FaultRates, seed: int = 11, rounds: int = 400, interval: float = 10.0
) -> tuple[list[tuple[bytes, bytes]], list[FaultLabel], ReadingStream]:
    network = build_network(np.random.default_rng([seed, 0]), legacy_fraction=rates.wrong_unit)
    stream = ReadingStream(network, rates, seed, interval, START)
    messages: list[tuple[bytes, bytes]] = []
    labels: list[FaultLabel] = []
    times = START + interval * np.arange(rounds, dtype=float)
    for chunk in np.array_split(times, 7):
        for batch in stream.rounds(chunk, now=START + rounds * interval):
            messages += zip(batch.keys, batch.values, strict=True)
            labels += batch.labels
    rest = stream.drain()
    messages += zip(rest.keys, rest.values, strict=True)
    return messages, labels, stream


def test_clean_stream_is_schema_valid_and_keyed_by_sensor() -> None:
    messages, labels, stream = _run(FaultRates.none(), rounds=50)
    assert labels == []
    assert len(messages) == 50 * stream.network.size
    seen: Counter[str] = Counter()
    for key, value in messages:
        reading = SensorReading.model_validate_json(value)
        assert key.decode() == reading.sensor_id
        spec = METRICS[reading.metric]
        assert reading.unit == spec.unit
        assert spec.minimum <= reading.value <= spec.maximum
        seen[reading.event_id] += 1
    assert max(seen.values()) == 1


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first, first_labels, _ = _run(FaultRates(), seed=5, rounds=60)
    again, again_labels, _ = _run(FaultRates(), seed=5, rounds=60)
    other, _, _ = _run(FaultRates(), seed=6, rounds=60)
    assert first == again
    assert first_labels == again_labels
    assert first != other


def test_every_label_points_at_an_emitted_message_and_invalid_ones_are_labelled() -> None:
    messages, labels, _ = _run(FaultRates(), rounds=300)
    digests = Counter(hashlib.sha1(v, usedforsecurity=False).hexdigest() for _, v in messages)
    by_digest: dict[str, set[str]] = {}
    for label in labels:
        assert label.sha1 in digests
        by_digest.setdefault(label.sha1, set()).update(label.faults)
    for _, value in messages:
        try:
            SensorReading.model_validate_json(value)
        except ValidationError:
            digest = hashlib.sha1(value, usedforsecurity=False).hexdigest()
            assert by_digest.get(digest, set()) & STRUCTURAL, value[:120]


def test_duplicates_repeat_the_same_bytes() -> None:
    messages, labels, _ = _run(FaultRates.none().model_copy(update={"duplicate": 0.02}))
    count = Counter(v for _, v in messages)
    duplicated = {label.sha1 for label in labels if "duplicate" in label.faults}
    assert duplicated
    for value, n in count.items():
        digest = hashlib.sha1(value, usedforsecurity=False).hexdigest()
        assert n == (2 if digest in duplicated else 1)


def test_delayed_events_arrive_after_later_readings_with_their_event_time() -> None:
    rates = FaultRates.none().model_copy(update={"late": 0.01, "out_of_order": 0.01})
    interval, rounds = 60.0, 1000
    messages, labels, _ = _run(rates, rounds=rounds, interval=interval)
    kind_of = {label.event_id: label.faults[0] for label in labels}
    end = START + rounds * interval
    newest_seen = -math.inf
    lags: dict[str, list[float]] = {"late": [], "out_of_order": []}
    for _, value in messages:
        reading = json.loads(value)
        event_time = datetime.fromisoformat(reading["event_time"]).timestamp()
        kind = kind_of.get(reading["event_id"])
        # only events whose release falls inside the run (the rest are drained at the end)
        if kind is not None and event_time < end - 6 * 3600:
            lags[kind].append(newest_seen - event_time)
        newest_seen = max(newest_seen, event_time)
    assert lags["late"]
    assert min(lags["late"]) >= 3600 - interval
    assert max(lags["late"]) <= 6 * 3600 + interval
    assert lags["out_of_order"]
    assert all(0 < lag <= 120 + interval for lag in lags["out_of_order"])


@pytest.mark.parametrize("kind", READING_FAULTS)
def test_per_reading_faults_happen_at_their_configured_rate(kind: str) -> None:
    rate = 0.02
    _, labels, stream = _run(FaultRates.none().model_copy(update={kind: rate}), rounds=250)
    readings = stream.counts["readings"]
    observed = sum(1 for label in labels if kind in label.faults)
    expected = readings * rate
    tolerance = 5 * math.sqrt(readings * rate * (1 - rate))
    assert abs(observed - expected) <= tolerance, (kind, observed, expected)


def test_sensor_level_faults_are_labelled_on_every_affected_reading() -> None:
    rates = FaultRates.none().model_copy(update={"wrong_unit": 0.5, "stuck": 0.05})
    messages, labels, stream = _run(rates, rounds=600, interval=60.0)
    legacy = {
        s
        for s, f in zip(stream.network.sensor_id, stream.network.legacy_fahrenheit, strict=True)
        if f
    }
    assert legacy
    units = {json.loads(v)["sensor_id"]: json.loads(v)["unit"] for _, v in messages}
    assert {s for s, unit in units.items() if unit == "°F"} == legacy
    stuck = [label for label in labels if "stuck" in label.faults]
    sensor_hours = 600 * 60 / 3600 * stream.network.size
    assert 0.5 * 0.05 * sensor_hours * 60 < len(stuck) < 2 * 0.05 * sensor_hours * 60
    values: dict[tuple[str, str], set[float]] = {}
    stuck_ids = {label.event_id for label in stuck}
    for _, raw in messages:
        reading = json.loads(raw)
        if reading["event_id"] in stuck_ids:
            key = (reading["sensor_id"], reading["event_time"][:13])
            values.setdefault(key, set()).add(reading["value"])
    assert all(len(v) == 1 for v in values.values()), "a stuck sensor repeats one value"


def test_fault_rates_parse_and_refuse_nonsense() -> None:
    rates = FaultRates.parse(["spike=0.1", "late=0"])
    assert rates.spike == 0.1
    assert rates.late == 0
    with pytest.raises(ValueError, match="KIND=RATE"):
        FaultRates.parse(["sparks=0.1"])
    with pytest.raises(ValueError, match="not a number"):
        FaultRates.parse(["spike=lots"])
    with pytest.raises(ValidationError):
        FaultRates.parse(["spike=1.5"])
    with pytest.raises(ValidationError, match="add up"):
        FaultRates.parse([f"{kind}=0.1" for kind in READING_FAULTS])
    assert set(FAULT_KINDS) >= set(READING_FAULTS)
