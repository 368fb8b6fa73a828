"""The cleaner scored against the simulator's labels (pure: no services involved).

Faults that are detectable by definition must be found with precision and recall >= 0.99;
spikes and stuck values with >= 0.9.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest

from iot_pipeline import vocabulary
from iot_pipeline.cleaning import RawRecord, SensorState, clean_batch
from iot_pipeline.generator.faults import FaultRates
from iot_pipeline.generator.network import build_network
from iot_pipeline.generator.stream import ReadingStream

STRUCTURAL = {"malformed_json", "missing_field", "extra_field", "wrong_type"}
START = datetime(2026, 11, 2, tzinfo=UTC).timestamp()


def _score(truth: set[int], predicted: set[int]) -> tuple[float, float]:
    hits = len(truth & predicted)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(truth) if truth else 1.0
    return precision, recall


@pytest.fixture(scope="module")
def scored() -> dict[str, tuple[float, float, int]]:
    rates = FaultRates().model_copy(
        update=dict.fromkeys((*STRUCTURAL, "impossible_value", "spike", "clock_skew"), 0.01)
    )
    network = build_network(np.random.default_rng([4, 0]), legacy_fraction=rates.wrong_unit)
    stream = ReadingStream(network, rates, 4, 60.0, START)
    now = time.time()
    values: list[bytes] = []
    labels: dict[str, set[str]] = defaultdict(set)
    times = START + 60.0 * np.arange(720, dtype=float)  # 12 hours
    for chunk in np.array_split(times, 12):
        for batch in stream.rounds(chunk, now):
            values += batch.values
            for label in batch.labels:
                labels[label.sha1].update(label.faults)
    values += stream.drain().values

    states: dict[str, SensorState] = {}
    readings, dead = {}, {}
    for start in range(0, len(values), 5000):
        records = [
            RawRecord(v, "t", 0, offset)
            for offset, v in enumerate(values[start : start + 5000], start=start)
        ]
        result = clean_batch(records, states, datetime.now(UTC))
        readings.update({r.source.offset: r for r in result.readings})
        dead.update({d.record.offset: d for d in result.dead_letters})
    assert len(readings) + len(dead) == len(values)

    seen: Counter[bytes] = Counter()
    copies: set[int] = set()
    truth: dict[str, set[int]] = defaultdict(set)
    for offset, value in enumerate(values):
        seen[value] += 1
        if seen[value] > 1:
            copies.add(offset)
            continue
        for fault in labels.get(hashlib.sha1(value, usedforsecurity=False).hexdigest(), ()):
            truth["structural" if fault in STRUCTURAL else fault].add(offset)
    firsts = {o for o in readings if o not in copies}

    # flags can only be judged on what could be parsed
    for kind in ("impossible_value", "wrong_unit", "clock_skew", "spike", "stuck"):
        truth[kind] &= firsts

    def flagged(flag: str) -> set[int]:
        return {o for o in firsts if flag in readings[o].flags}

    predicted = {
        "structural": set(dead) - copies,
        "impossible_value": flagged(vocabulary.IMPOSSIBLE_VALUE),
        "wrong_unit": flagged(vocabulary.UNIT_CONVERTED),
        "clock_skew": flagged(vocabulary.FUTURE_TIMESTAMP),
        "spike": flagged(vocabulary.SPIKE),
        "stuck": flagged(vocabulary.STUCK),
    }
    out = {kind: (*_score(truth[kind], predicted[kind]), len(truth[kind])) for kind in predicted}
    # duplicates: every later copy of the same event, whatever else it carries
    duplicate_copies = {o for o in copies if o in readings}
    out["duplicate"] = (
        *_score(
            duplicate_copies, {o for o, r in readings.items() if vocabulary.DUPLICATE in r.flags}
        ),
        len(duplicate_copies),
    )
    return out


@pytest.mark.parametrize(
    ("kind", "floor"),
    [
        ("structural", 0.99),
        ("impossible_value", 0.99),
        ("wrong_unit", 0.99),
        ("clock_skew", 0.99),
        ("duplicate", 0.99),
        ("spike", 0.9),
        ("stuck", 0.9),
    ],
)
def test_quality_flags_match_the_labels(
    scored: dict[str, tuple[float, float, int]], kind: str, floor: float
) -> None:
    precision, recall, support = scored[kind]
    assert support > 50, f"too few {kind} faults to score"
    assert precision >= floor, f"{kind}: precision {precision:.4f} (support {support})"
    assert recall >= floor, f"{kind}: recall {recall:.4f} (support {support})"
